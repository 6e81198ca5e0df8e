//! kaya-control-plane: the API server, scheduler and controllers are not built yet; the
//! storage layer is (`kaya_control_plane::store`).

fn main() {
    eprintln!("kaya-control-plane: the API server is not built yet; agents run in standalone mode");
    std::process::exit(2);
}
