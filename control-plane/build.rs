//! Generates the node API's gRPC code (client and server) from proto/node.proto.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(&["proto/node.proto"], &["proto"])?;
    Ok(())
}
