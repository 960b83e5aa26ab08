//! Build script: embeds the web client (every file under web/, found by walking the
//! directory, so files other people add are picked up) with its gzip and brotli
//! forms compressed once here, at build time, not per request. Each file gets a strong
//! ETag (a hash of its bytes). `web/sw.js` gets the build's version (a hash of the
//! whole client) and the list of shell files, so a new client installs a new service
//! worker cache and drops the old one.
//!
//! Output: `$OUT_DIR/web_assets.rs`, included by `src/http/web.rs`.

use std::{
    env,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

/// A compressed form is kept only when it saves at least this share (PNGs do not
/// shrink; serving them "compressed" would only cost the client CPU).
const MIN_SAVING: f64 = 0.05;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = root.join("web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // A directory: cargo rescans every file in it, so edits and new files rebuild.
    println!("cargo:rerun-if-changed=web");
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    walk(&web, &mut files);
    files.sort();
    let names: Vec<String> =
        files.iter().map(|p| p.strip_prefix(&web).expect("under web/").to_string_lossy().replace('\\', "/")).collect();

    // The client's version: a hash over every file's name and bytes.
    let mut whole = Sha256::new();
    let mut contents = Vec::new();
    for (path, name) in files.iter().zip(&names) {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        whole.update(name.as_bytes());
        whole.update([0]);
        whole.update(Sha256::digest(&bytes));
        contents.push(bytes);
    }
    let version = hex(&whole.finalize()[..8]);

    let asset_dir = out.join("web");
    let _ = fs::remove_dir_all(&asset_dir);
    fs::create_dir_all(&asset_dir).expect("create OUT_DIR/web");
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (i, (name, mut bytes)) in names.iter().zip(contents).enumerate() {
        if name == "sw.js" {
            bytes = service_worker(&bytes, &version, &names);
        }
        let etag = hex(&Sha256::digest(&bytes)[..12]);
        let raw = asset_dir.join(format!("{i}"));
        fs::write(&raw, &bytes).expect("write asset");
        let gz = compressed(&asset_dir, i, "gz", &bytes, gzip(&bytes));
        let br = compressed(&asset_dir, i, "br", &bytes, brotli(&bytes));
        writeln!(
            table,
            "    Asset {{ path: {name:?}, etag: \"\\\"{etag}\\\"\", raw: include_bytes!({raw:?}), gzip: {gz}, br: {br} }},",
            raw = raw.display().to_string(),
        )
        .expect("write to a String");
    }
    table.push_str("];\n");
    writeln!(table, "/// A hash of the whole web client (also the service worker's cache version).").expect("fmt");
    writeln!(table, "pub const VERSION: &str = {version:?};").expect("fmt");
    fs::write(out.join("web_assets.rs"), table).expect("write web_assets.rs");
}

/// Every file under `dir`, skipping hidden ones (editor swap files and the like).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
}

/// The service worker with its version and shell list filled in (see web/sw.js).
fn service_worker(src: &[u8], version: &str, names: &[String]) -> Vec<u8> {
    let text = String::from_utf8_lossy(src);
    let shell: Vec<String> = std::iter::once("/".to_string())
        .chain(names.iter().filter(|n| *n != "sw.js").map(|n| format!("/{n}")))
        .collect();
    let list = format!("[{}]", shell.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "));
    text.replace("const VERSION = 'dev';", &format!("const VERSION = '{version}';"))
        .replace("const SHELL = [];", &format!("const SHELL = {list};"))
        .into_bytes()
}

/// Writes a compressed form when it is worth it; returns the Rust expression for it.
fn compressed(dir: &Path, i: usize, ext: &str, raw: &[u8], packed: Vec<u8>) -> String {
    if (packed.len() as f64) > (raw.len() as f64) * (1.0 - MIN_SAVING) {
        return "None".to_string();
    }
    let path = dir.join(format!("{i}.{ext}"));
    fs::write(&path, &packed).expect("write compressed asset");
    format!("Some(include_bytes!({:?}))", path.display().to_string())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("brotli into memory");
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
