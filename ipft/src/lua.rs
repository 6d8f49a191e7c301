//! Lua extensions (`ipft -s FILE.lua`), ipftrace2's scripting API version
//! 1: the script sets `api_version = 1` and `program` (the bytes of a BPF
//! object defining `module()`), may define `init()` and `fini()`, and
//! defines `decode(data)`, which turns each event's 64 payload bytes into a
//! flat table of strings and numbers. Only the `ipft` command links Lua;
//! generated tracers never do.

use std::path::Path;

use ipft_runtime::extension::{ExtFields, ExtValue, Extension, PayloadDecoder};
use ipft_runtime::say;
use mlua::{Function, Lua, LuaOptions, StdLib, Value};

/// The scripting API version this ipft speaks.
pub const API_VERSION: i64 = 1;

/// `print` writes to stderr so a script's messages never mix with the
/// trace on stdout (JSON Lines stays parseable).
const PRELUDE: &str = r#"
print = function(...)
  local args = table.pack(...)
  for i = 1, args.n do args[i] = tostring(args[i]) end
  io.stderr:write(table.concat(args, "\t"), "\n")
end
"#;

/// Run the script at `path` and check it: API version, `program`, a
/// `decode` function; then call its `init()`. Errors are one line naming
/// the file (and the line, for Lua errors).
pub fn load(path: &Path) -> Result<Extension, String> {
    let (object, decoder) = open(path)?;
    Ok(Extension {
        name: decoder.name.clone(),
        object,
        decoder: Box::new(decoder),
    })
}

/// A loaded script's decoder.
struct Script {
    /// The state the functions below live in.
    lua: Lua,
    /// The file name, for messages.
    name: String,
    decode: Function,
    fini: Option<Function>,
    /// Events whose decode failed.
    errors: u64,
}

fn open(path: &Path) -> Result<(Vec<u8>, Script), String> {
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    let source = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    // SAFETY: all standard libraries, as ipftrace2 (luaL_openlibs) gives
    // them: scripts use `debug.getinfo` to find files beside them. The
    // script is the user's own code, as trusted as the BPF it loads; we
    // hand it no userdata whose invariants `debug` could break.
    let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::new()) };
    let fail = |e: mlua::Error| lua_message(&shown, &e);
    lua.load(PRELUDE).set_name("=ipft").exec().map_err(fail)?;
    // "@path": Lua then names the file in messages (`path:12: ...`) and in
    // debug.getinfo's `source`, as luaL_dofile does.
    lua.load(skip_shebang(&source))
        .set_name(format!("@{shown}"))
        .exec()
        .map_err(fail)?;
    let g = lua.globals();
    let get = |key: &str| g.get::<Value>(key).map_err(fail);
    match get("api_version")? {
        Value::Integer(API_VERSION) => {}
        Value::Nil => return Err(format!("{shown}: no api_version (set api_version = 1)")),
        Value::Integer(v) => {
            return Err(format!(
                "{shown}: api_version {v} is not supported (this ipft speaks version {API_VERSION})"
            ))
        }
        v => {
            return Err(format!(
                "{shown}: api_version must be an integer, not {}",
                a(&v)
            ))
        }
    }
    let object = match get("program")? {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Nil => {
            return Err(format!(
                "{shown}: no `program` (the BPF object's bytes, e.g. \
                 program = io.open(\"foo.bpf.o\", \"rb\"):read(\"a\"))"
            ))
        }
        v => {
            return Err(format!(
                "{shown}: `program` must be a string holding a BPF object, not {}",
                a(&v)
            ))
        }
    };
    if !object.starts_with(b"\x7fELF") {
        return Err(format!(
            "{shown}: `program` is not an ELF object ({} bytes, no \\x7fELF magic); \
             compile one with clang -target bpf",
            object.len()
        ));
    }
    let function = |key: &str| match get(key)? {
        Value::Function(f) => Ok(Some(f)),
        Value::Nil => Ok(None),
        v => Err(format!(
            "{shown}: `{key}` must be a function, not {}",
            a(&v)
        )),
    };
    let decode = function("decode")?.ok_or_else(|| format!("{shown}: no decode(data) function"))?;
    let fini = function("fini")?;
    if let Some(init) = function("init")? {
        init.call::<()>(())
            .map_err(|e| format!("init() failed: {}", lua_message(&shown, &e)))?;
    }
    let script = Script {
        lua,
        name,
        decode,
        fini,
        errors: 0,
    };
    Ok((object, script))
}

/// "a string", "an integer": a Lua type name with its article.
fn a(v: &Value) -> String {
    let t = v.type_name();
    match t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => format!("an {t}"),
        false => format!("a {t}"),
    }
}

/// Lua skips a first line starting with `#` (a shebang) in files; keep its
/// newline so line numbers stay right.
fn skip_shebang(source: &[u8]) -> &[u8] {
    match source.first() {
        Some(b'#') => {
            &source[source
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(source.len())..]
        }
        _ => source,
    }
}

/// The message of a Lua error without mlua's stack traceback, naming the
/// script if Lua did not (`error("x", 0)`, errors outside Lua code).
fn lua_message(script: &str, e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => return lua_message(script, cause),
        other => other.to_string(),
    };
    let text = text.split("\nstack traceback:").next().unwrap_or("").trim();
    let text = text.replace('\n', " ");
    let file = Path::new(script).file_name().map(|f| f.to_string_lossy());
    match file {
        Some(f) if text.contains(f.as_ref()) => text,
        _ => format!("{script}: {text}"),
    }
}

impl Script {
    /// `decode(data)`'s table as fields sorted by key, or why not.
    fn fields(&self, data: &[u8]) -> Result<ExtFields, String> {
        let lua = &self.lua;
        let info = self.decode.info();
        let src = info.short_src.unwrap_or_else(|| self.name.clone());
        // Where decode is defined: bad returns have no Lua error position.
        let at = format!("{src}:{}", info.line_defined.unwrap_or(0));
        let bytes = lua.create_string(data).map_err(|e| lua_message(&src, &e))?;
        let table = match self.decode.call::<Value>(bytes) {
            Ok(Value::Table(t)) => t,
            Ok(v) => return Err(format!("{at}: decode() must return a table, not {}", a(&v))),
            Err(e) => return Err(lua_message(&src, &e)),
        };
        let mut fields = ExtFields::new();
        for pair in table.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| lua_message(&src, &e))?;
            let key = match k {
                Value::String(s) => s.to_string_lossy(),
                k => {
                    return Err(format!(
                        "{at}: decode() returned {} key; keys must be strings",
                        a(&k)
                    ))
                }
            };
            let value = match v {
                Value::Integer(i) => match u64::try_from(i) {
                    Ok(u) => ExtValue::Uint(u),
                    Err(_) => ExtValue::Int(i),
                },
                // Lua's own rendering (1.5, 2.0, inf), as ipftrace2 shows it.
                Value::Number(_) => match lua.coerce_string(v) {
                    Ok(Some(s)) => ExtValue::Str(s.to_string_lossy()),
                    _ => ExtValue::Str("?".into()),
                },
                Value::String(s) => ExtValue::Str(s.to_string_lossy()),
                v => {
                    return Err(format!(
                        "{at}: decode() returned {} for {key:?}; values must be strings or numbers",
                        a(&v)
                    ))
                }
            };
            fields.push((key, value));
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(fields)
    }
}

impl Script {
    /// `gso.lua:12: ...` rather than the path the script was given by, in
    /// every event's error field.
    fn shortened(&self, msg: String) -> String {
        let src = self.decode.info().short_src.unwrap_or_default();
        match msg.strip_prefix(src.as_str()) {
            Some(rest) if !src.is_empty() && rest.starts_with(':') => {
                format!("{}{rest}", self.name)
            }
            _ => msg,
        }
    }
}

impl PayloadDecoder for Script {
    fn decode(&mut self, data: &[u8]) -> ExtFields {
        match self.fields(data) {
            Ok(f) => f,
            Err(msg) => {
                let msg = self.shortened(msg);
                self.errors += 1;
                if self.errors == 1 {
                    say!("ipft: decode() failed: {msg} (shown as the event's error field; later failures are only counted)");
                }
                vec![("error".to_string(), ExtValue::Str(msg))]
            }
        }
    }

    fn finish(&mut self) {
        if self.errors > 1 {
            say!(
                "ipft: {}: decode() failed for {} events",
                self.name,
                self.errors
            );
        }
        if let Some(fini) = self.fini.take() {
            if let Err(e) = fini.call::<()>(()) {
                say!("ipft: fini() failed: {}", lua_message(&self.name, &e));
            }
        }
    }
}

#[cfg(test)]
mod tests;
