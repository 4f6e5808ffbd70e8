import { defineConfig } from "@playwright/test";
import { BASE_URL, PORT, TOKEN } from "./tests/env";

// Drives the release build in Debian's Chromium; nothing is downloaded.
export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  retries: 0,
  workers: 1,
  outputDir: "./test-results/artifacts",
  use: {
    baseURL: BASE_URL,
    screenshot: "on",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: {
    // A throwaway data dir; the token exists only for this run.
    // INGEST_E2E_BINARY runs another build (e.g. ../target/debug/ingest while developing);
    // CI runs the release build.
    command: `rm -rf ../target/e2e-data && ${process.env.INGEST_E2E_BINARY ?? "../target/release/ingest"}`,
    url: `${BASE_URL}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      INGEST_TOKEN: TOKEN,
      INGEST_DATA_DIR: "../target/e2e-data",
      INGEST_CONFIG: "../Leptos.toml",
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      LEPTOS_SITE_ROOT: "../target/site",
      // Each job takes ~2 s to process, so tests can catch one mid-run.
      INGEST_PROCESSING_DELAY_MS: "1000",
      // The webhooks spec's receiver listens on loopback.
      INGEST_WEBHOOK_ALLOW_PRIVATE: "true",
    },
  },
});
