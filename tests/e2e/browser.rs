//! The Integrations page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven through WebDriver: the setup guide's steps one by one, a
//! screenshot of each in `target/screenshots/<test>/`, names that are markup shown as text,
//! and the page at a phone's width.

use crate::serve_util::{Server, account, connect, import_sample};
use crate::util::{Env, US_KEY};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A chromedriver on a free port of 127.0.0.1, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; ./scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            port,
            _profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    async fn browser(&self, width: u32, height: u32) -> Client {
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", self._profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium(), "args": args}),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's chromium binary.
fn chromium() -> String {
    for path in ["/usr/bin/chromium", "/usr/lib/chromium/chromium"] {
        if std::path::Path::new(path).exists() {
            return path.to_string();
        }
    }
    "chromium".to_string()
}

/// Where a test's screenshots go: `target/screenshots/<test>/`, emptied first.
fn screenshot_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

struct Page {
    client: Client,
    shots: PathBuf,
    step: usize,
}

impl Page {
    async fn shot(&mut self, name: &str) {
        self.step += 1;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.step)), png)
            .expect("write screenshot");
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
    }

    /// Waits until `script` (an expression) is true.
    async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self
                .client
                .execute(&format!("return !!({script});"), vec![])
                .await
                .expect("script");
            if v == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.expect("text")
    }

    async fn visible(&self, selector: &str) -> bool {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); return !!e && !e.closest('[hidden]') && e.offsetParent !== null;",
                vec![json!(selector)],
            )
            .await
            .expect("script")
            == Value::Bool(true)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_setup_guide_in_a_real_browser() {
    let env = Env::new();
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    import_sample(&server, &admin);
    let driver = Driver::start();
    runtime().block_on(async {
        let client = driver.browser(1280, 1100).await;
        let mut page = Page {
            client,
            shots: screenshot_dir("the_setup_guide_in_a_real_browser"),
            step: 0,
        };
        page.client.goto(&server.base).await.expect("open the page");
        // Sign in.
        page.css("#token").await.send_keys(&admin).await.unwrap();
        page.shot("sign-in").await;
        page.css("#signin-button").await.click().await.unwrap();
        page.until("the connect card", "!document.querySelector('#connect-card').hidden").await;
        assert_eq!(page.text("#connect-card h2").await, "Connect IT Glue");
        let connect_disabled = page.css("#connect-button").await.attr("disabled").await.unwrap();
        assert!(connect_disabled.is_some(), "Connect is disabled before a test");
        page.shot("connect-card").await;
        // A wrong key: "That key didn't work", with hints; Connect stays disabled.
        page.css("#api-key").await.send_keys("wrong-key").await.unwrap();
        page.css("#test-button").await.click().await.unwrap();
        page.until("the key error", "!document.querySelector('#key-error').hidden").await;
        let error = page.text("#key-error").await;
        assert!(error.contains("That key didn't work"), "{error}");
        assert!(error.contains("trailing spaces"), "{error}");
        assert!(page.css("#connect-button").await.attr("disabled").await.unwrap().is_some());
        assert!(!page.visible("#verified-badge").await);
        page.shot("wrong-key").await;
        // The right key: Verified, and Connect enabled.
        page.css("#api-key").await.clear().await.unwrap();
        page.css("#api-key").await.send_keys(US_KEY).await.unwrap();
        page.css("#test-button").await.click().await.unwrap();
        page.until("the Verified badge", "!document.querySelector('#verified-badge').hidden").await;
        assert_eq!(page.text("#verified-badge").await, "Verified");
        page.until("Connect enabled", "!document.querySelector('#connect-button').disabled").await;
        page.shot("verified").await;
        page.css("#connect-button").await.click().await.unwrap();
        page.until("connected", "!document.querySelector('#connection').hidden").await;
        let key_field = page
            .client
            .execute("return document.querySelector('#api-key').value", vec![])
            .await
            .unwrap();
        assert_eq!(key_field, json!(""), "the key is never shown again");
        page.shot("connected").await;
        // Sync organizations, then configurations: counts appear.
        page.css("#sync-organization-button").await.click().await.unwrap();
        page.until(
            "organization counts",
            "document.querySelector('#sync-organization .count-linked').textContent.trim() === '20'",
        )
        .await;
        assert_eq!(page.text("#sync-organization .count-skipped").await, "13");
        assert_eq!(page.text("#sync-organization .count-errored").await, "0");
        let last = page.text("#sync-organization .last-sync").await;
        assert!(!last.contains("Never"), "{last}");
        page.shot("organizations-synced").await;
        page.css("#sync-configuration-button").await.click().await.unwrap();
        page.until(
            "configuration counts",
            "document.querySelector('#sync-configuration .last-sync').textContent.indexOf('Never') < 0 && document.querySelector('#sync-configuration .count-linked').textContent.trim() !== '0'",
        )
        .await;
        page.shot("configurations-synced").await;
        // The couldn't-place list: names, a plain-words badge, candidates by name.
        let row = "#unplaced-organization li.unplaced[data-source-id='3100109']";
        page.until("Adventure Works unplaced", &format!("document.querySelector(\"{row}\")")).await;
        assert_eq!(page.text(&format!("{row} .reason-badge")).await, "matches multiple clients");
        let candidates = page.text(&format!("{row} .candidates")).await;
        assert!(candidates.contains("Adventure-Works"), "{candidates}");
        page.shot("couldnt-place").await;
        // Link it by hand, through the search.
        page.css(&format!("{row} .link-button")).await.click().await.unwrap();
        page.css(&format!("{row} input.link-search")).await.send_keys("Adventure").await.unwrap();
        page.until("search results", &format!("document.querySelector(\"{row} button.search-result\")")).await;
        page.shot("link-search").await;
        page.css(&format!("{row} button.search-result")).await.click().await.unwrap();
        page.until("the row gone", &format!("!document.querySelector(\"{row}\")")).await;
        page.shot("linked-by-hand").await;
        page.client.close().await.unwrap();
    });
    let links = server
        .get(
            "/api/v1/integrations/itglue/links?kind=organization",
            &admin,
        )
        .expect(200)
        .json();
    let manual = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source_id"] == "3100109")
        .expect("linked by hand in the page");
    assert_eq!(manual["source"], "manual");
}

#[test]
fn names_that_are_markup_stay_text_in_the_page_and_it_fits_a_phone() {
    let mut data = itglue_sim::sample_dataset();
    let payload = r#"<img src=x onerror="document.title='pwned';window.pwned=1">"#;
    data.organizations
        .push(itglue_sim::Org::new(3_199_001, payload));
    data.organizations.push(itglue_sim::Org::new(
        3_199_002,
        "<script>window.pwned=2</script>",
    ));
    let env = Env::with(itglue_sim::SimConfig {
        dataset: data,
        ..Default::default()
    });
    let (admin, _) = account(&env, "acme");
    let server = Server::start(&env, &[]);
    import_sample(&server, &admin);
    connect(&server, &admin);
    let run = server.sync(&admin, "organization");
    assert_eq!(run["status"], "ok", "{run}");
    let driver = Driver::start();
    runtime().block_on(async {
        let client = driver.browser(375, 812).await;
        let mut page = Page {
            client,
            shots: screenshot_dir("names_that_are_markup_stay_text"),
            step: 0,
        };
        page.client.goto(&server.base).await.unwrap();
        page.css("#token").await.send_keys(&admin).await.unwrap();
        // Enter signs in: the keyboard is enough.
        page.css("#token").await.send_keys("\u{E007}").await.unwrap();
        let row = "#unplaced-organization li.unplaced[data-source-id='3199001']";
        page.until("the markup-named record", &format!("document.querySelector(\"{row}\")")).await;
        assert_eq!(page.text(&format!("{row} .record-name")).await, payload);
        let script_row = "#unplaced-organization li.unplaced[data-source-id='3199002']";
        assert_eq!(
            page.text(&format!("{script_row} .record-name")).await,
            "<script>window.pwned=2</script>"
        );
        let state = page
            .client
            .execute(
                "return [document.title, window.pwned === undefined, document.querySelectorAll('#unplaced-organization img, #unplaced-organization script').length, document.documentElement.scrollWidth <= window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(state[0], json!("Integrations · Scopable"), "{state}");
        assert_eq!(state[1], json!(true), "a name ran as script: {state}");
        assert_eq!(state[2], json!(0), "a name became markup: {state}");
        assert_eq!(state[3], json!(true), "the page scrolls sideways at 375 px: {state}");
        page.shot("phone-width").await;
        page.client.close().await.unwrap();
    });
}
