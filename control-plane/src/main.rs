//! kaya-control-plane: the API server, store, scheduler and controllers (not built yet).

fn main() {
    eprintln!("kaya-control-plane: not implemented yet; agents run in standalone mode");
    std::process::exit(2);
}
