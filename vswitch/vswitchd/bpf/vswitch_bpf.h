/* Minimal stand-in for libbpf's bpf_helpers.h, so building the XDP objects needs only clang and
 * the kernel UAPI headers (linux-libc-dev), not libbpf-dev. */
#pragma once
#include <linux/types.h>
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* helper ids from enum bpf_func_id (linux/bpf.h) */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

#define bpf_htons(x) __builtin_bswap16(x)
