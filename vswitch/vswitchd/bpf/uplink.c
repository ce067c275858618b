/* XDP program for the node's uplink NIC: steal only what the switch serves (VXLAN to the
 * node IP on the configured UDP port, IPIP to the node IP, IPv4 to the pod CIDR) and pass
 * everything else (ARP, SSH, kubelet, ICMP to the node...) to the kernel untouched. */
#include "vswitch_bpf.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>

struct uplink_cfg {
    __u32 node_ip;    /* network byte order; 0 = not configured: pass everything */
    __u32 pod_net;    /* network byte order, masked */
    __u32 pod_mask;   /* network byte order */
    __u16 vxlan_port; /* network byte order */
    __u16 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct uplink_cfg);
} uplink_cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);   /* rx queue */
    __type(value, __u32); /* AF_XDP socket */
} uplink_xsks SEC(".maps");

SEC("xdp")
int vswitch_uplink(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    __u32 zero = 0;

    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end)
        return XDP_PASS;
    struct uplink_cfg *c = bpf_map_lookup_elem(&uplink_cfg, &zero);
    if (!c || c->node_ip == 0)
        return XDP_PASS;

    if (ip->daddr == c->node_ip) {
        if (ip->protocol == IPPROTO_IPIP)
            goto redirect;
        if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x1fff)))
            return XDP_PASS; /* non-first fragments carry no UDP header */
        __u32 ihl = ip->ihl * 4;
        if (ihl < sizeof(*ip))
            return XDP_PASS;
        struct udphdr *udp = (void *)ip + ihl;
        if ((void *)(udp + 1) > end)
            return XDP_PASS;
        if (udp->dest == c->vxlan_port)
            goto redirect;
        return XDP_PASS;
    }
    if ((ip->daddr & c->pod_mask) == c->pod_net)
        goto redirect;
    return XDP_PASS;

redirect:
    return bpf_redirect_map(&uplink_xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
