FROM base:1
COPY requirements.txt /tmp/runctl-requirements.txt
COPY runctl-ca.pem /tmp/runctl-ca.pem
COPY runctl-pip.conf /tmp/runctl-pip.conf
RUN PIP_CERT=/tmp/runctl-ca.pem PIP_CONFIG_FILE=/tmp/runctl-pip.conf PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/runctl-requirements.txt
