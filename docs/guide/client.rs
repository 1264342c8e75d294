//! The guide's Rust caller (docs/guide.md, "4. Call it"): greets, and counts a visit, on the
//! host at the URL it is given.
//! From the project root: `cargo run -p easyrpc-tests --example guide_client -- ws://127.0.0.1:8220/ws/easy`
use easyrpc::client::EasyRpcProxy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8220/ws/easy".to_owned());
    let shop = EasyRpcProxy::connect(&url, "shop-secret", "shop").await?;
    // Positional arguments; `greeting` keeps its default.
    let hello = shop.call("greet", vec!["rust".into()], vec![]).await?;
    // Keyword arguments by name, as Python passes them.
    let visits = shop.call("visit", vec![], vec![("page".to_owned(), "/rust".into())]).await?;
    println!("{hello} {visits}");
    shop.close().await;
    Ok(())
}
