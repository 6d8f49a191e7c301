use std::path::{Path, PathBuf};

use super::*;

/// A directory of its own per test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ipft-lua-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Enough of an ELF header for the loader's check.
const HEAD: &str = "api_version = 1\nprogram = \"\\x7fELF\\2\\1\\1\\0\"\n";

/// The payload ipftrace2's gso example decodes: u32 len, u16 gso_size,
/// u16 gso_segs, u32 gso_type, then zeroes to 64 bytes.
fn payload(len: u32, size: u16, segs: u16, gso_type: u32) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(len.to_ne_bytes());
    d.extend(size.to_ne_bytes());
    d.extend(segs.to_ne_bytes());
    d.extend(gso_type.to_ne_bytes());
    d.resize(64, 0);
    d
}

fn load_err(dir: &Scratch, name: &str, body: &str) -> String {
    match open(&dir.write(name, body)) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e,
    }
}

fn error_field(fields: &ExtFields) -> &str {
    match fields.as_slice() {
        [(k, ExtValue::Str(m))] if k == "error" => m,
        other => panic!("not one error field: {other:?}"),
    }
}

#[test]
fn decodes_fields_sorted_by_key() {
    let dir = Scratch::new("decode");
    let body = format!(
        "{HEAD}function decode(data)\n\
         local len, size, segs, t = string.unpack(\"=I4I2I2I4\", data)\n\
         return {{ len = len, gso_size = size, gso_segs = segs,\n\
                   gso_type = string.format(\"%#x\", t), delta = -5, ratio = len / 2, half = 1.5 }}\n\
         end\n"
    );
    let ext = load(&dir.write("gso.lua", body)).unwrap();
    assert_eq!(ext.name, "gso.lua");
    assert_eq!(ext.object, b"\x7fELF\x02\x01\x01\x00");
    let mut dec = ext.decoder;
    let f = dec.decode(&payload(1514, 1448, 2, 0x11));
    let s = |v: &str| ExtValue::Str(v.into());
    assert_eq!(
        f,
        vec![
            ("delta".into(), ExtValue::Int(-5)),
            ("gso_segs".into(), ExtValue::Uint(2)),
            ("gso_size".into(), ExtValue::Uint(1448)),
            ("gso_type".into(), s("0x11")),
            ("half".into(), s("1.5")),
            ("len".into(), ExtValue::Uint(1514)),
            // A float stays one, rendered as Lua does.
            ("ratio".into(), s("757.0")),
        ]
    );
}

#[test]
fn init_runs_once_before_decode_and_fini_at_the_end() {
    let dir = Scratch::new("fini");
    let done = dir.0.join("fini-ran");
    let body = format!(
        "{HEAD}inits = 0\nfunction init() inits = inits + 1 end\n\
         function decode(data) return {{ inits = inits }} end\n\
         function fini() io.open({:?}, \"w\"):write(\"inits=\" .. inits):close() end\n",
        done.display().to_string()
    );
    let (_, mut s) = open(&dir.write("f.lua", body)).unwrap();
    assert_eq!(
        s.decode(&[0; 64]),
        vec![("inits".into(), ExtValue::Uint(1))]
    );
    assert!(!done.exists(), "fini ran early");
    s.finish();
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "inits=1");
    // Once only.
    std::fs::remove_file(&done).unwrap();
    s.finish();
    assert!(!done.exists());
}

#[test]
fn an_error_in_decode_is_a_field_with_file_and_line_and_tracing_goes_on() {
    let dir = Scratch::new("runtime");
    let body = format!(
        "{HEAD}function decode(data)\n\
         if data:byte(1) == 0xff then\n\
         local missing\n\
         return missing.field\n\
         end\n\
         return {{ first = data:byte(1) }}\n\
         end\n"
    );
    // Deep enough for Lua to shorten the path in its messages ("...").
    let deep = dir
        .0
        .join("a-directory-with-a-rather-long-name-to-pass-sixty-chars");
    std::fs::create_dir_all(&deep).unwrap();
    let path = deep.join("oops.lua");
    std::fs::write(&path, body).unwrap();
    let (_, mut s) = open(&path).unwrap();
    let mut bad = vec![0xffu8; 64];
    let f = s.decode(&bad);
    let m = error_field(&f);
    // The return is on line 6 of the file (HEAD is 2 lines); the field
    // names the file, not the whole path.
    assert!(m.starts_with("oops.lua:6: attempt to index"), "{m}");
    assert!(!m.contains("traceback"), "{m}");
    bad[0] = 7;
    assert_eq!(s.decode(&bad), vec![("first".into(), ExtValue::Uint(7))]);
    bad[0] = 0xff;
    s.decode(&bad);
    assert_eq!(s.errors, 2);
}

#[test]
fn error_without_position_still_names_the_script() {
    let dir = Scratch::new("level0");
    let body = format!("{HEAD}function decode(data) error(\"no luck\", 0) end\n");
    let (_, mut s) = open(&dir.write("quiet.lua", body)).unwrap();
    let f = s.decode(&[0; 64]);
    let m = error_field(&f);
    assert!(m.contains("quiet.lua") && m.ends_with("no luck"), "{m}");
}

#[test]
fn bad_returns_are_error_fields() {
    let dir = Scratch::new("returns");
    for (ret, want) in [
        (
            "{ a = 1, inner = { b = 2 } }",
            "returned a table for \"inner\"",
        ),
        ("{ f = print }", "returned a function for \"f\""),
        ("{ [1] = \"x\" }", "returned an integer key"),
        ("{ ok = true }", "returned a boolean for \"ok\""),
        ("42", "must return a table, not an integer"),
        ("nil", "must return a table, not a nil"),
    ] {
        let body = format!("{HEAD}\nfunction decode(data)\n  return {ret}\nend\n");
        let (_, mut s) = open(&dir.write("ret.lua", body)).unwrap();
        let f = s.decode(&[0; 64]);
        let m = error_field(&f);
        // decode is defined on line 4.
        assert!(m.contains("ret.lua:4: decode() "), "{ret}: {m}");
        assert!(m.contains(want), "{ret}: {m}");
    }
}

#[test]
fn api_version_other_than_1_is_refused() {
    let dir = Scratch::new("api");
    let rest = "program = \"\\x7fELF\"\nfunction decode(d) return {} end\n";
    let e = load_err(&dir, "v2.lua", &format!("api_version = 2\n{rest}"));
    assert!(
        e.contains("v2.lua") && e.contains("api_version 2 is not supported"),
        "{e}"
    );
    let e = load_err(&dir, "none.lua", rest);
    assert!(e.contains("none.lua: no api_version"), "{e}");
    let e = load_err(&dir, "str.lua", &format!("api_version = \"1\"\n{rest}"));
    assert!(e.contains("str.lua: api_version must be an integer"), "{e}");
}

#[test]
fn program_must_be_an_elf_string() {
    let dir = Scratch::new("program");
    let decode = "function decode(d) return {} end\n";
    let e = load_err(&dir, "p.lua", &format!("api_version = 1\n{decode}"));
    assert!(e.contains("p.lua: no `program`"), "{e}");
    let e = load_err(
        &dir,
        "p.lua",
        &format!("api_version = 1\nprogram = \"hello\"\n{decode}"),
    );
    assert!(
        e.contains("p.lua: `program` is not an ELF object (5 bytes"),
        "{e}"
    );
    let e = load_err(
        &dir,
        "p.lua",
        &format!("api_version = 1\nprogram = {{}}\n{decode}"),
    );
    assert!(e.contains("must be a string"), "{e}");
}

#[test]
fn bad_scripts_name_file_and_line() {
    let dir = Scratch::new("bad");
    let e = load_err(
        &dir,
        "syntax.lua",
        &format!("{HEAD}function decode(data)\n  return {{\nend\n"),
    );
    assert!(e.contains("syntax.lua:5:"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = load_err(&dir, "nodecode.lua", HEAD);
    assert!(e.contains("nodecode.lua: no decode(data) function"), "{e}");
    let e = load_err(&dir, "notfn.lua", &format!("{HEAD}decode = 3\n"));
    assert!(
        e.contains("`decode` must be a function, not an integer"),
        "{e}"
    );
    let e = load_err(&dir, "top.lua", &format!("{HEAD}local x = nil + 1\n"));
    assert!(
        e.contains("top.lua:3: attempt to perform arithmetic"),
        "{e}"
    );
    let e = load_err(
        &dir,
        "init.lua",
        &format!(
            "{HEAD}function decode(d) return {{}} end\nfunction init()\n  error(\"boom\")\nend\n"
        ),
    );
    assert!(
        e.starts_with("init() failed:") && e.contains("init.lua:5: boom"),
        "{e}"
    );
    let e = open(&dir.0.join("absent.lua")).err().unwrap();
    assert!(e.contains("absent.lua: No such file"), "{e}");
}

#[test]
fn fini_errors_are_not_fatal_and_shebang_keeps_line_numbers() {
    let dir = Scratch::new("shebang");
    let body = format!("#!/usr/bin/env ipft\n{HEAD}function decode(d) error(\"x\") end\nfunction fini() error(\"late\") end\n");
    let (_, mut s) = open(&dir.write("sb.lua", body)).unwrap();
    let f = s.decode(&[0; 64]);
    assert!(error_field(&f).contains("sb.lua:4: x"), "{f:?}");
    s.finish();
}

/// The shipped gso.lua, run from a copy with an object beside it.
#[test]
fn shipped_gso_script_reads_its_object_and_names_flags() {
    let dir = Scratch::new("gso");
    let src = include_str!("../../../extensions/lua/gso.lua");
    let e = match open(&dir.write("gso.lua", src)) {
        Ok(_) => panic!("loaded without gso.bpf.o"),
        Err(e) => e,
    };
    assert!(e.contains("gso.lua:") && e.contains("gso.bpf.o"), "{e}");
    dir.write("gso.bpf.o", b"\x7fELF fake object");
    let path: &Path = &dir.0.join("gso.lua");
    let ext = load(path).unwrap();
    assert_eq!(ext.object, b"\x7fELF fake object");
    let mut dec = ext.decoder;
    // tcpv4 | tcp_ecn | tcpv6, and bit 29, which has no name.
    let f = dec.decode(&payload(2962, 1448, 2, 1 | 4 | 16 | 1 << 29));
    assert_eq!(
        f,
        vec![
            ("gso_segs".into(), ExtValue::Uint(2)),
            ("gso_size".into(), ExtValue::Uint(1448)),
            (
                "gso_type".into(),
                ExtValue::Str("tcpv4|tcp_ecn|tcpv6|0x20000000".into())
            ),
            ("len".into(), ExtValue::Uint(2962)),
        ]
    );
    let f = dec.decode(&payload(60, 0, 0, 1 << 19 | 1 << 30 | 1 << 31));
    let want = "tcp_accecn|tcp_fixedid_outer|tcp_fixedid_inner";
    assert_eq!(f[2], ("gso_type".into(), ExtValue::Str(want.into())));
    let f = dec.decode(&payload(60, 0, 0, 0));
    assert_eq!(f[2], ("gso_type".into(), ExtValue::Str("none".into())));
    dec.finish();
}
