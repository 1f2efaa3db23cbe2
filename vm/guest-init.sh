#!/bin/sh
# /init of the test guest (vm/kernels.py): mount what the agent needs, run the selected kernel
# tests against /repo (this checkout's agent, tests and precompiled objects), send the results
# to the host over the second serial port (ttyS1), power off. Never returns.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb PYTHONHASHSEED=0
export PYTHONPATH=/repo/agent RANDGUARD_REQUIRE_KERNEL_TESTS=1
# every kernel of the matrix allows fentry: the resolver must attach (test_loader)
export RANDGUARD_EXPECT_FENTRY=1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/lock
mount -t tmpfs tmpfs /tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# modules the kernel may load on demand, as on a real host (vm/testvm/kernel.py GUEST_MODULES)
[ -d /usr/lib/modules/"$(uname -r)" ] && depmod -a 2>/dev/null
ip link set lo up
hostname rg-guest
ln -sf /proc/self/fd /dev/fd 2>/dev/null

uptime() { cut -d' ' -f1 /proc/uptime; }
echo "randguard guest: $(uname -r), $(nproc) CPUs," \
     "$(sed -n 's/MemTotal: *//p' /proc/meminfo), userspace at $(uptime)s"

OUT=/tmp/rg-out
mkdir -p $OUT
uname -r > $OUT/uname
cat /sys/kernel/security/lsm > $OUT/lsm 2>/dev/null || echo "?" > $OUT/lsm

cd /repo
if ! python3 /rg/clock.py > /tmp/clock; then
    # a miscalibrated clock: the host boots this guest again
    cp /tmp/clock $OUT/clock_bad
    cat /tmp/clock
elif [ -s /rg/cmd ]; then
    # debugging: vm/kernels.py --guest-cmd
    sh /rg/cmd > $OUT/cmd 2>&1
    echo $? > $OUT/rc
    cat $OUT/cmd
else
    # shellcheck disable=SC2046
    python3 -m pytest -p no:cacheprovider -m kernel -ra --junitxml=$OUT/junit \
        $(cat /rg/tests) $(cat /rg/pytest_args)
    echo $? > $OUT/rc
fi
echo "tests done at $(uptime)s"

# What this kernel supports, as the agent itself reports it: its agent_start record with
# file, process and network events on.
if [ -e /rg/probe ] && [ -e $OUT/rc ]; then
    python3 /rg/probe.py > $OUT/agent_start 2> $OUT/agent_start.err
    echo "agent_start probe done at $(uptime)s"
fi

# Each file of $OUT as a base64 section; tcdrain so that power-off cuts nothing.
python3 /rg/send.py $OUT /dev/ttyS1
sync
echo o > /proc/sysrq-trigger
sleep 30
