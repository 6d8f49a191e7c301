#ifndef __IPFT_EXTENSION_H__
#define __IPFT_EXTENSION_H__

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define __ipft_sec_skip __attribute__((section("__ipft_skip")))
#define __ipft_ref(name) name __ipft_sec_skip
#define __ipft_event_struct __ipft_event_struct __ipft_sec_skip
/* hexadecimal (integers), hex bytes (arrays) */
#define __ipft_fmt_hex __attribute__((btf_decl_tag("ipft:fmt:hex")))
/* the enumerator's name */
#define __ipft_fmt_enum(ref) __attribute__((btf_decl_tag("ipft:fmt:enum:" #ref)))
/* set bits by name, joined with | */
#define __ipft_fmt_enum_flags(ref) __attribute__((btf_decl_tag("ipft:fmt:enum_flags:" #ref)))
/* an IPv4 (4 bytes) or IPv6 (16 bytes; v4-mapped shown dotted) address, network order */
#define __ipft_fmt_ip __attribute__((btf_decl_tag("ipft:fmt:ip")))
/* an integer in network byte order (ports) */
#define __ipft_fmt_be __attribute__((btf_decl_tag("ipft:fmt:be")))
/* a NUL-terminated string (char arrays are strings by default) */
#define __ipft_fmt_str __attribute__((btf_decl_tag("ipft:fmt:str")))

#endif
