//! Build script: compiles the `points.v1` protobuf contract under `../proto`
//! with protox (pure Rust, no system `protoc`), generates prost messages and
//! tonic clients/servers, and writes the encoded `FileDescriptorSet` to
//! `OUT_DIR/points_descriptor.bin` for gRPC reflection.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto_root = manifest_dir.join("..").join("proto");

    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root, &proto_root, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files under {}", proto_root.display()).into());
    }
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }

    // Files are named relative to the include root ("points/v1/common.proto"),
    // the same way the .proto imports name them.
    let fds = protox::compile(&files, [&proto_root])?;

    fs::write(out_dir.join("points_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    Ok(())
}

/// Collects every `.proto` file below `dir`, as a path relative to `root`
/// with `/` separators.
fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            let rel = path.strip_prefix(root)?;
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(name);
        }
    }
    Ok(())
}
