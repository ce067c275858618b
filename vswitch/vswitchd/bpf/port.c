/* XDP program for the switch's veth ports (pods and the host port): every frame goes to the
 * AF_XDP socket of the port, looked up by ingress ifindex -> port slot -> XSKMAP. One program
 * instance serves every port. A frame on an interface without a socket passes to the kernel
 * (low bits of bpf_redirect_map's flags = fallback action). */
#include "vswitch_bpf.h"

/* Must match vswitchd's MAX_PORTS. */
#define MAX_PORTS 1024

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_PORTS);
    __type(key, __u32);   /* ingress ifindex */
    __type(value, __u32); /* port slot */
} port_slots SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, MAX_PORTS);
    __type(key, __u32);   /* port slot */
    __type(value, __u32); /* AF_XDP socket */
} port_xsks SEC(".maps");

SEC("xdp")
int vswitch_port(struct xdp_md *ctx)
{
    __u32 ifindex = ctx->ingress_ifindex;
    __u32 *slot = bpf_map_lookup_elem(&port_slots, &ifindex);
    if (!slot)
        return XDP_PASS;
    return bpf_redirect_map(&port_xsks, *slot, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
