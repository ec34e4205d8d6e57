FROM base:1
COPY requirements.txt /tmp/runctl-requirements.txt
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/runctl-requirements.txt
