//! Compiles the .proto files with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // read at run time: a build script binary can be shared by checkouts in other places
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    let files = [
        "strata/metadata/v1/metadata.proto",
        "strata/cache/v1/cache.proto",
    ];
    let descriptors = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // blocks travel as `Bytes`, handed to the block cache without a copy
        .bytes(".strata.cache.v1.GetBlockResponse.data")
        .compile_fds(descriptors)?;
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    Ok(())
}
