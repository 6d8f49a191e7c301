//! The few libpcap calls ipft makes: compile an expression for a link type
//! on a dead handle (no capture, no device), and, for the tests, run a
//! program with libpcap's own interpreter. libpcap.a is linked statically
//! (build.rs).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::Mutex;

use super::cbpf::RawInsn;

/// Ethernet (DLT_EN10MB): the filter starts at the mac header.
pub const LINKTYPE_ETHERNET: i32 = 1;
/// Raw IP (DLT_RAW on Linux): the filter starts at the network header.
pub const LINKTYPE_RAW: i32 = 12;

/// What the compiled filter returns on a match: any non-zero snap length.
const SNAPLEN: c_int = 262_144;
/// PCAP_NETMASK_UNKNOWN: `ip broadcast` is refused, everything else works.
const NETMASK_UNKNOWN: c_uint = 0xffff_ffff;

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut RawInsn,
}

#[repr(C)]
struct PktHdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut c_void;
    fn pcap_close(p: *mut c_void);
    fn pcap_compile(
        p: *mut c_void,
        prog: *mut BpfProgram,
        expr: *const c_char,
        optimize: c_int,
        netmask: c_uint,
    ) -> c_int;
    fn pcap_geterr(p: *mut c_void) -> *const c_char;
    fn pcap_freecode(prog: *mut BpfProgram);
    fn pcap_offline_filter(prog: *const BpfProgram, h: *const PktHdr, pkt: *const u8) -> c_int;
}

/// Older libpcaps' parser is not reentrant: one compile at a time.
static COMPILE: Mutex<()> = Mutex::new(());

/// Compile `expr` for `linktype` into classic BPF; the error is libpcap's
/// message.
pub fn compile(expr: &str, linktype: i32) -> Result<Vec<RawInsn>, String> {
    let c = CString::new(expr).map_err(|_| "the expression holds a NUL byte".to_string())?;
    let _one = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: a dead handle needs nothing but the link type; it is closed
    // on every path below, and the program freed once copied.
    unsafe {
        let p = pcap_open_dead(linktype, SNAPLEN);
        if p.is_null() {
            return Err("libpcap: cannot open a handle".into());
        }
        let mut prog = BpfProgram {
            len: 0,
            insns: std::ptr::null_mut(),
        };
        let r = if pcap_compile(p, &mut prog, c.as_ptr(), 1, NETMASK_UNKNOWN) != 0 {
            Err(CStr::from_ptr(pcap_geterr(p))
                .to_string_lossy()
                .trim()
                .to_string())
        } else {
            let v = if prog.insns.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(prog.insns, prog.len as usize).to_vec()
            };
            pcap_freecode(&mut prog);
            Ok(v)
        };
        pcap_close(p);
        r
    }
}

/// libpcap's verdict on a packet of `wirelen` bytes of which `pkt` were
/// captured: what the translations are held against.
pub fn offline_filter(insns: &[RawInsn], pkt: &[u8], wirelen: u32) -> bool {
    let prog = BpfProgram {
        len: insns.len() as c_uint,
        insns: insns.as_ptr() as *mut RawInsn,
    };
    let h = PktHdr {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: pkt.len() as u32,
        len: wirelen,
    };
    // SAFETY: the program and packet outlive the call; libpcap only reads.
    unsafe { pcap_offline_filter(&prog, &h, pkt.as_ptr()) != 0 }
}

/// libpcap.a lists a D-Bus capture source, whose object calls libdbus; ipft
/// never captures, so these stand in for libdbus (no bus: a null
/// connection, nothing set) and the static link needs no libdbus-1.a (nor
/// the libsystemd.a Debian does not ship).
macro_rules! no_dbus {
    ($($name:ident),* $(,)?) => {$(
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $name() -> usize {
            0
        }
    )*};
}

no_dbus!(
    dbus_bus_add_match,
    dbus_bus_get,
    dbus_bus_register,
    dbus_connection_flush,
    dbus_connection_open,
    dbus_connection_pop_message,
    dbus_connection_read_write,
    dbus_connection_send,
    dbus_connection_set_max_received_size,
    dbus_connection_unref,
    dbus_error_free,
    dbus_error_is_set,
    dbus_free,
    dbus_message_demarshal,
    dbus_message_is_signal,
    dbus_message_marshal,
    dbus_message_unref,
);
