import { expect, test } from "./fixtures";
import { TOKEN } from "./env";

test("sign in: a wrong token shows why, the right one shows the app, sign out ends it", async ({
  page,
  signIn,
}, testInfo) => {
  await page.goto("/");
  // The form is rendered on the server, before any wasm runs.
  await expect(page.getByLabel("API token")).toBeVisible();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();

  await signIn("not-the-token-0123456789");
  await expect(page.getByRole("alert")).toContainText("Invalid token");
  await page.screenshot({ path: testInfo.outputPath("sign-in-refused.png"), fullPage: true });

  await signIn();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
  const session = (await page.context().cookies()).find((c) => c.name === "ingest_session");
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe("Strict");
  expect(await page.evaluate(() => document.cookie)).not.toContain("ingest_session");

  // The server renders the signed-in page on reload.
  await page.reload();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
  // The button is in the server's HTML before the page responds to it.
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("signed-in.png"), fullPage: true });

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByLabel("API token")).toBeVisible();
});

test("the signed-in page is hydrated and calls the server", async ({ page, signIn }, testInfo) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto("/");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await signIn();
  await expect(page.locator("#service-info")).toContainText("uploads up to");
  await page.getByRole("button", { name: "Check server" }).click();
  await expect(page.locator("#check-count")).toHaveText("checked 1×");
  await expect(page.locator("#service-info")).toContainText("Server 0.1.0");
  await page.screenshot({ path: testInfo.outputPath("home.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("an ingest without a file, started from the page, is followed live to completed", async ({
  page,
  signIn,
}, testInfo) => {
  await page.goto("/");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await signIn();
  const metadata = page.getByLabel("Metadata (optional JSON object)");
  await metadata.fill('{"from": ');
  await expect(page.locator("#metadata-problem")).toContainText("not valid JSON");
  await expect(page.getByRole("button", { name: "Start ingest" })).toBeDisabled();
  await metadata.fill("[1, 2]");
  await expect(page.locator("#metadata-problem")).toContainText("JSON object");
  await metadata.fill('{"from": "playwright"}');
  await expect(page.getByRole("button", { name: "Start ingest" })).toBeEnabled();
  await page.getByRole("button", { name: "Start ingest" }).click();

  const card = page.locator(".job").first();
  await expect(card).toHaveAttribute("data-status", "completed");
  await expect(card.locator(".state")).toHaveText("Completed");
  await expect(card.locator(".elapsed")).toHaveText(/\d/);
  await expect(card.locator("progress")).toHaveAttribute("value", "100");
  await page.screenshot({ path: testInfo.outputPath("ingest-completed.png"), fullPage: true });
});

test("no token appears in the served HTML, JS or WASM", async ({ page, signIn, request }) => {
  const assets: string[] = [];
  page.on("response", (response) => assets.push(response.url()));
  await page.goto("/");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await signIn();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
  await page.reload();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  const origin = new URL(page.url()).origin;
  const served = new Set(assets.filter((url) => url.startsWith(origin)));
  expect([...served].some((url) => url.endsWith(".wasm"))).toBe(true);
  expect([...served].some((url) => url.endsWith(".js"))).toBe(true);
  // And the wasm parts this visit did not need (the other pages', the uploads').
  const manifest = await (await request.get("/pkg/__wasm_split_manifest.json")).json();
  const parts = new Set(Object.values(manifest as Record<string, string[]>).flat());
  expect(parts.size).toBeGreaterThan(0);
  for (const part of parts) {
    served.add(`${origin}/pkg/${part}.wasm`);
  }
  for (const url of served) {
    const answer = await request.get(url);
    if (url.includes("/pkg/")) {
      expect(answer.ok(), `${url} is served`).toBe(true);
    }
    const body = Buffer.from(await answer.body());
    expect(body.includes(Buffer.from(TOKEN)), `${url} contains the token`).toBe(false);
    expect(body.includes(Buffer.from("REPLACE_WITH_PROD_TOKEN")), `${url} has the placeholder`).toBe(false);
  }
  const html = await page.content();
  expect(html.includes(TOKEN)).toBe(false);
});

test("the API answers curl-style requests beside the app", async ({ request }) => {
  const accepted = await request.post("/api/ingest", {
    headers: { Authorization: `Bearer ${TOKEN}` },
    data: { metadata: '{"from":"playwright"}' },
  });
  expect(accepted.status()).toBe(202);
  const { job_id } = await accepted.json();
  await expect
    .poll(async () => {
      const status = await request.get(`/api/status/${job_id}`, {
        headers: { Authorization: `Bearer ${TOKEN}` },
      });
      return (await status.json()).status;
    })
    .toBe("completed");
  const refused = await request.get(`/api/status/${job_id}`);
  expect(refused.status()).toBe(401);
});

test("the app runs under its Content-Security-Policy without a single violation", async ({
  page,
  signIn,
}) => {
  // Violations are collected in the page itself, before any of its scripts run.
  await page.addInitScript(() => {
    (window as any).__violations = [];
    document.addEventListener("securitypolicyviolation", (event) =>
      (window as any).__violations.push(`${event.violatedDirective} ${event.blockedURI}`),
    );
  });
  const blocked: string[] = [];
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) blocked.push(message.text());
  });
  const response = await page.goto("/");
  const policy = response?.headers()["content-security-policy"] ?? "";
  expect(policy).toContain("'nonce-");
  expect(policy).toContain("frame-ancestors 'none'");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await signIn();
  await page.getByRole("button", { name: "Start ingest" }).click();
  const card = page.locator(".job").first();
  await expect(card.locator(".state")).toHaveText("Completed", { timeout: 30_000 });
  await page.goto("/jobs");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  expect(await page.evaluate(() => (window as any).__violations)).toEqual([]);
  expect(blocked).toEqual([]);
});
