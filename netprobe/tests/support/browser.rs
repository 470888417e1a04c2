//! A page opened in headless Chromium (Debian's `chromium`, which `cargo
//! xtask test` installs), driven over the DevTools protocol: the errors it
//! logged, scripts run in it, and a screenshot of all of it.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use headless_chrome::{
    Browser, LaunchOptions, Tab,
    protocol::cdp::{
        Log::LogEntryLevel, Page, Runtime::ConsoleAPICalledEventTypeOption, types::Event,
    },
};
use serde::de::DeserializeOwned;
use tempfile::TempDir;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where tests keep what a person should look at: target/test-artifacts.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp is in target")
        .join("test-artifacts");
    fs::create_dir_all(&dir).expect("creating target/test-artifacts");
    dir
}

pub struct BrowserPage {
    tab: Arc<Tab>,
    errors: Arc<Mutex<Vec<String>>>,
    _browser: Browser,
    _profile: TempDir,
}

impl BrowserPage {
    /// Opens the file at `path` in a new headless Chromium, `width` pixels
    /// wide.
    pub fn open(path: &Path, width: u32) -> Self {
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing: `cargo xtask test` installs Debian's chromium"
        );
        let profile = tempfile::tempdir().expect("a profile directory");
        let flags = [
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ];
        let options = LaunchOptions::default_builder()
            .path(Some(PathBuf::from(CHROMIUM)))
            .sandbox(false)
            .window_size(Some((width, 1000)))
            .user_data_dir(Some(profile.path().to_owned()))
            .args(flags.iter().map(OsStr::new).collect())
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .expect("Chromium's options");
        let browser = Browser::new(options).expect("Chromium starts");
        let tab = browser.new_tab().expect("a tab");
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&errors);
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let error = match event {
                Event::RuntimeConsoleAPICalled(call)
                    if call.params.Type == ConsoleAPICalledEventTypeOption::Error =>
                {
                    Some(format!("console.error: {:?}", call.params.args))
                }
                Event::RuntimeExceptionThrown(thrown) => Some(format!(
                    "exception: {}",
                    thrown.params.exception_details.text
                )),
                Event::LogEntryAdded(entry) if entry.params.entry.level == LogEntryLevel::Error => {
                    Some(format!("log: {}", entry.params.entry.text))
                }
                _ => None,
            };
            if let Some(error) = error {
                seen.lock().expect("errors").push(error);
            }
        }))
        .expect("listening to the page");
        tab.enable_log().expect("Log domain");
        tab.enable_runtime().expect("Runtime domain");
        let url = format!(
            "file://{}",
            path.canonicalize().expect("the page").display()
        );
        tab.navigate_to(&url)
            .and_then(|tab| tab.wait_until_navigated())
            .expect("the page loads");
        Self {
            tab,
            errors,
            _browser: browser,
            _profile: profile,
        }
    }

    /// What the page logged as errors or threw.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors").clone()
    }

    /// Runs `script`, an expression whose value is a JSON text, and reads
    /// that value.
    pub fn evaluate<T: DeserializeOwned>(&self, script: &str) -> T {
        let result = self.tab.evaluate(script, false).expect("the script runs");
        let json = result.value.expect("the script returns a value");
        let json = json.as_str().expect("the script returns JSON text");
        serde_json::from_str(json).expect("the script's JSON")
    }

    /// A PNG of the whole page, at `path`.
    pub fn screenshot(&self, path: &Path) {
        let (width, height): (f64, f64) = self.evaluate(
            "JSON.stringify([document.documentElement.scrollWidth, \
             document.documentElement.scrollHeight])",
        );
        let png = self
            .tab
            .call_method(Page::CaptureScreenshot {
                format: Some(Page::CaptureScreenshotFormatOption::Png),
                quality: None,
                clip: Some(Page::Viewport {
                    x: 0.0,
                    y: 0.0,
                    width,
                    height,
                    scale: 1.0,
                }),
                from_surface: Some(true),
                capture_beyond_viewport: Some(true),
                optimize_for_speed: None,
            })
            .expect("a screenshot");
        use base64::Engine as _;
        let png = base64::prelude::BASE64_STANDARD
            .decode(png.data)
            .expect("the screenshot's PNG");
        fs::write(path, png).expect("writing the screenshot");
    }
}
