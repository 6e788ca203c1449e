#!/usr/bin/env bash
# AllReduce between two "hosts": two network namespaces joined by a veth pair, dtrain udp (with and without the MAC)
# vs PyTorch gloo, one Markdown table on stdout (benchmarks/allreduce/compare.py --netns). World 2 puts one rank in
# each namespace, world 4 two. Needs root (ip netns); creates the namespaces and removes them on exit, and all
# traffic stays inside them (10.214.N.0/24, no route out).
# Usage: benchmarks/allreduce/netns.sh [--mtu 9000] [compare.py options: --worlds 2,4 --sizes ... --rounds 3 --only ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MTU=9000
if [ "${1:-}" = "--mtu" ]; then MTU="$2"; shift 2; fi
[ "$(id -u)" = 0 ] || { echo "netns.sh: needs root (ip netns add)" >&2; exit 2; }
ID=$$
NET=$(( ID % 200 + 20 ))
NS_A="dtbenchA$ID"; NS_B="dtbenchB$ID"; VETH_A="dtba$ID"; VETH_B="dtbb$ID"
ADDR_A="10.214.$NET.1"; ADDR_B="10.214.$NET.2"
cleanup() {
  ip netns del "$NS_A" 2>/dev/null || true   # deleting a namespace deletes its end of the veth pair, and the pair
  ip netns del "$NS_B" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "$VETH_A" type veth peer name "$VETH_B"
ip link set "$VETH_A" netns "$NS_A"
ip link set "$VETH_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B"
for ns_dev in "$NS_A:$VETH_A" "$NS_B:$VETH_B"; do
  ip -n "${ns_dev%%:*}" link set "${ns_dev#*:}" mtu "$MTU" up
  ip -n "${ns_dev%%:*}" link set lo up
done
# The 4 MiB socket buffers dtrain asks for need net.core.rmem_max/wmem_max >= 4 MiB (host-wide, not per namespace).
"$ROOT/bin/dtrain" --version >/dev/null   # builds the jar once if sources changed, not between runs
DTRAIN_NO_REBUILD=1 /usr/bin/python3 "$ROOT/benchmarks/allreduce/compare.py" --netns "$NS_A@$ADDR_A,$NS_B@$ADDR_B" "$@"
