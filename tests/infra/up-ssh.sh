#!/usr/bin/env bash
# An SSH host for the tests: its own sshd, with its own host key, in a network namespace
# with its own address (10.231.0.2, reached over a veth pair; taking the link down cuts it
# off). Root logs in with a key made here; nothing in /etc/ssh or ~/.ssh is touched.
# Idempotent: a namespace and an sshd already up (by their pid file) are left as they are.
set -euo pipefail
STATE=${RUNCTL_TEST_SSH_STATE:-/var/lib/runctl-test-ssh}
NS=runctl-ssh
HOST_IF=rctl-h
NS_IF=rctl-n
HOST_ADDR=10.231.0.1
NS_ADDR=10.231.0.2
PORT=2222
export DEBIAN_FRONTEND=noninteractive

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ip >/dev/null || need+=(iproute2)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v rsync >/dev/null || need+=(rsync)  # (bench/bench_ssh.py measures against it; the suite runs it)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$STATE" /run/sshd
chmod 700 "$STATE"
[ -f "$STATE/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_ed25519"
[ -f "$STATE/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/client_ed25519"
cp "$STATE/client_ed25519.pub" "$STATE/authorized_keys"
cat >"$STATE/sshd_config" <<CONF
Port $PORT
ListenAddress $NS_ADDR
HostKey $STATE/host_ed25519
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxSessions 64
MaxStartups 64:30:128
CONF

if ! ip netns list | grep -qw "$NS"; then
    ip netns add "$NS"
fi
if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NS_IF"
    ip link set "$NS_IF" netns "$NS"
    ip addr add "$HOST_ADDR/24" dev "$HOST_IF"
    ip netns exec "$NS" ip addr add "$NS_ADDR/24" dev "$NS_IF"
    ip netns exec "$NS" ip link set lo up
fi
ip link set "$HOST_IF" up
ip netns exec "$NS" ip link set "$NS_IF" up

if ! { [ -f "$STATE/sshd.pid" ] && kill -0 "$(cat "$STATE/sshd.pid")" 2>/dev/null; }; then
    ip netns exec "$NS" /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log"
    for _ in $(seq 1 50); do
        [ -f "$STATE/sshd.pid" ] && break
        sleep 0.1
    done
fi
# A second sshd on this machine's loopback: a "login node" for the Slurm tests, where
# sbatch reaches the test cluster's controller (the namespace above has no route to it).
LOGIN_PORT=2223
sed -e "s/^Port .*/Port $LOGIN_PORT/" -e "s/^ListenAddress .*/ListenAddress 127.0.0.1/" \
    -e "s#^PidFile .*#PidFile $STATE/sshd-login.pid#" "$STATE/sshd_config" >"$STATE/sshd_login_config"
if ! { [ -f "$STATE/sshd-login.pid" ] && kill -0 "$(cat "$STATE/sshd-login.pid")" 2>/dev/null; }; then
    /usr/sbin/sshd -f "$STATE/sshd_login_config" -E "$STATE/sshd-login.log"
    for _ in $(seq 1 50); do
        [ -f "$STATE/sshd-login.pid" ] && break
        sleep 0.1
    done
fi
# The host key lines the tests trust (their own known_hosts; never ~/.ssh/known_hosts).
key=$(cut -d' ' -f1,2 "$STATE/host_ed25519.pub")
printf '[%s]:%s %s\n[127.0.0.1]:%s %s\n' "$NS_ADDR" "$PORT" "$key" "$LOGIN_PORT" "$key" >"$STATE/known_hosts"
ssh -o BatchMode=yes -o UserKnownHostsFile="$STATE/known_hosts" -o StrictHostKeyChecking=yes \
    -i "$STATE/client_ed25519" -p "$PORT" "root@$NS_ADDR" true \
    || { echo "sshd in namespace $NS does not answer; see $STATE/sshd.log" >&2; exit 1; }
ssh -o BatchMode=yes -o UserKnownHostsFile="$STATE/known_hosts" -o StrictHostKeyChecking=yes \
    -i "$STATE/client_ed25519" -p "$LOGIN_PORT" root@127.0.0.1 true \
    || { echo "the login sshd on 127.0.0.1:$LOGIN_PORT does not answer; see $STATE/sshd-login.log" >&2; exit 1; }
echo "ssh ok: root@$NS_ADDR:$PORT and root@127.0.0.1:$LOGIN_PORT (key $STATE/client_ed25519, known_hosts $STATE/known_hosts)"
