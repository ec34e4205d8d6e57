FROM base:1
COPY requirements.txt /tmp/runctl-requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/runctl-requirements.txt
