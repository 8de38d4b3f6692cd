//! A client of the runtime's API for the benchmarks: one `ureq` agent, bearer tokens,
//! bodies read whole, every status returned (never an error for a 4xx or 5xx).

/// The runtime at `base` (`http://127.0.0.1:PORT`), reached through `agent`.
pub struct Client {
    /// The agent (its configuration must not turn statuses into errors).
    pub agent: ureq::Agent,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Client {
    /// A client of `base` with a 10-minute timeout per request.
    pub fn new(base: &str) -> Client {
        Client {
            agent: ureq::Agent::new_with_config(
                ureq::config::Config::builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(std::time::Duration::from_secs(600)))
                    .build(),
            ),
            base: base.to_string(),
        }
    }

    /// Sends `method path` with `token` and an optional (content type, body); the status
    /// and the body (status 0 and the error when nothing came back).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<(&str, String)>,
    ) -> (u16, String) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {token}"));
        let body = match body {
            Some((content_type, body)) => {
                request = request.header("Content-Type", content_type);
                body
            }
            None => String::new(),
        };
        match self.agent.run(request.body(body).expect("request")) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                (status, text)
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Imports `clients` and `configurations` (CSV) for `token`'s account and connects the
    /// simulator's US key; panics on any answer but 200.
    pub fn set_up(&self, token: &str, clients: &str, configurations: &str) {
        for (path, csv) in [
            ("/api/v1/clients", clients),
            ("/api/v1/configurations", configurations),
        ] {
            let (status, body) =
                self.send("POST", path, token, Some(("text/csv", csv.to_string())));
            assert_eq!(status, 200, "{body}");
        }
        let key = serde_json::json!({"region": "us", "api_key": "sim-key-us", "endpoint": null});
        let (status, body) = self.send(
            "POST",
            "/api/v1/integrations/itglue/connect",
            token,
            Some(("application/json", key.to_string())),
        );
        assert_eq!(status, 200, "{body}");
    }
}
