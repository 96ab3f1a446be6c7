//! The server's page (`GET /`), driven in headless Chromium through WebDriver (chromedriver +
//! fantoccini): the zoo chart lists every served model, a dropped picture gets one result card
//! per model with the API's own top-1, the explanation overlay appears, latency is measured on
//! demand, the phone-width layout does not scroll sideways, and screenshots at desktop and phone
//! width land in `target/test-artifacts/`.
//!
//! Chromium and chromedriver come from `scripts/setup.sh` (Debian's packages).

mod common;

use base64::Engine;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The first picture of the model-zoo fixture (a cat), as PNG.
fn fixture_png() -> Vec<u8> {
    let sprite = image::open(repo_root().join("tests/fixtures/model-zoo/test-images.jpg")).expect("fixture sprite").to_rgb8();
    let tile = image::imageops::crop_imm(&sprite, 0, 0, 32, 32).to_image();
    encode(&tile, image::ImageFormat::Png)
}

/// Shipped models (with test accuracies and seed points; f32 and int8) and a fresh export (no
/// accuracy: the chart must still list it).
fn models() -> std::path::PathBuf {
    let dir = process_temp_dir("page-models");
    for name in SHIPPED {
        let file = format!("{name}.onnx");
        std::fs::copy(repo_root().join("model-zoo").join(&file), dir.join(&file)).unwrap_or_else(|e| panic!("model-zoo/{file}: {e}"));
    }
    export("resnet-light", &dir.join("fresh.onnx"));
    dir
}

const SHIPPED: [&str; 3] = ["resnet-light", "resnet-light-int8", "vgg"];
const SERVED: usize = SHIPPED.len() + 1;

/// chromedriver on a free loopback port, killed with the test.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: run `bash scripts/setup.sh` (installs Debian's chromium-driver)");
        let driver = Driver(child, port);
        wait_until("chromedriver listens", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let profile = process_temp_dir("chromium-profile");
    let args = ["--headless=new", "--hide-scrollbars"]
        .into_iter()
        .chain(CHROMIUM_FLAGS)
        .map(String::from)
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), serde_json::json!({ "args": args }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a WebDriver session in Chromium")
}

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn screenshot(c: &Client, name: &str, width: u32, height: u32) {
    c.set_window_size(width, height).await.unwrap();
    c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the chart redraws for the new width
    let png = c.screenshot().await.unwrap();
    let dir = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Drops `png` on the drop zone as a browser does: a `drop` event carrying the file.
const DROP_SCRIPT: &str = r#"
const bytes = Uint8Array.from(atob(arguments[0]), (ch) => ch.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], "cat.png", { type: "image/png" }));
document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
"#;

#[test]
fn the_page_compares_every_model_and_explains_in_headless_chromium() {
    let s = Server::start(&models(), &[]);
    let driver = Driver::start();
    let served: Vec<String> = get(&s.u("/v1/models")).json()["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(served.len(), SERVED);
    let png = fixture_png();
    let top1 = |model: &str| post(&s.u(&format!("/v1/models/{model}/classify")), "image/png", &png).json()["results"][0]["predictions"][0]["label"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let c = browser(&driver).await;
        c.set_window_size(1280, 1000).await.unwrap();
        c.goto(&s.u("/")).await.unwrap();
        wait_for(&c, &format!("body[data-models='{SERVED}']")).await;

        // The chart lists every served model.
        let mut charted = Vec::new();
        for g in c.find_all(Locator::Css("#chart [data-model]")).await.unwrap() {
            charted.push(g.attr("data-model").await.unwrap().unwrap());
        }
        charted.sort();
        let mut expected = served.clone();
        expected.sort();
        assert_eq!(charted, expected);
        let chart_text = c.find(Locator::Css("#chart")).await.unwrap().text().await.unwrap();
        assert!(chart_text.contains("fresh"), "the model without accuracy is named: {chart_text}");

        // Dropping the fixture: one card per model, each with the API's top-1.
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        c.execute(DROP_SCRIPT, vec![serde_json::json!(b64)]).await.unwrap();
        wait_for(&c, &format!("body[data-classified='{SERVED}']")).await;
        let cards = c.find_all(Locator::Css("#cards .card")).await.unwrap();
        assert_eq!(cards.len(), served.len());
        for name in &served {
            let card = c.find(Locator::Css(&format!(".card[data-model='{name}']"))).await.unwrap();
            assert_eq!(card.attr("data-top1").await.unwrap(), Some(top1(name)), "{name}");
            assert_eq!(card.find_all(Locator::Css(".bar")).await.unwrap().len(), 5);
        }

        // Why: the overlay for the first model.
        c.find(Locator::Css(".card[data-model='resnet-light'] .why")).await.unwrap().click().await.unwrap();
        let explained = wait_for(&c, ".card[data-model='resnet-light'][data-explained]").await;
        assert_eq!(explained.attr("data-explained").await.unwrap(), Some(top1("resnet-light")));
        let overlay = explained.find(Locator::Css("canvas.overlay")).await.unwrap();
        assert!(overlay.is_displayed().await.unwrap(), "the overlay is shown");

        // Latency on demand: every row gets its batch-1 median.
        c.find(Locator::Css("#measure")).await.unwrap().click().await.unwrap();
        c.wait()
            .at_most(Duration::from_secs(120))
            .for_element(Locator::XPath("//span[@id='measure-status' and starts-with(., 'Batch 1')]"))
            .await
            .expect("the latency run finishes");
        for cell in c.find_all(Locator::Css("#zoo-table td.latency")).await.unwrap() {
            let text = cell.text().await.unwrap();
            assert!(text.ends_with(" ms"), "latency cell: {text:?}");
        }

        // The page's requests went through the API and were counted.
        let metrics = get(&s.u("/metrics")).text();
        for endpoint in ["classify", "explain"] {
            let series = format!("cifar_serve_requests_total{{endpoint=\"/v1/models/{{name}}/{endpoint}\",model=\"resnet-light\",status=\"200\"}}");
            assert!(metric(&metrics, &series).is_some_and(|n| n >= 1.0), "{series} missing");
        }

        screenshot(&c, "page-desktop.png", 1280, 1900).await;
        screenshot(&c, "page-phone.png", 390, 2400).await;
        let overflow = c.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
        assert!(overflow.as_f64().unwrap() <= 0.0, "the page scrolls sideways on a phone by {overflow} px");
        c.close().await.unwrap();
    });
}
