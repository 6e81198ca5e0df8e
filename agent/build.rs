//! Builds the eBPF programs (ebpf/programs) with nightly through aya-build and puts the
//! object in OUT_DIR, where the agent embeds it.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/programs");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "kaya-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
