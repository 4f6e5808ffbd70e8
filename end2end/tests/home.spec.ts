import { expect, test } from "@playwright/test";
import { TOKEN } from "./env";

test("the page is rendered on the server and then hydrated", async ({ page }, testInfo) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto("/");
  // Server-rendered: the heading and the server's facts are in the HTML.
  await expect(page.getByRole("heading", { name: "Ingest" })).toBeVisible();
  await expect(page.locator("#service-info")).toContainText("uploads up to");
  // Hydrated: the wasm flips the marker and the button calls a server function.
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await page.getByRole("button", { name: "Check server" }).click();
  await expect(page.locator("#check-count")).toHaveText("checked 1×");
  await expect(page.locator("#service-info")).toContainText("Server 0.1.0");
  await page.screenshot({ path: testInfo.outputPath("home.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("no token appears in the served HTML, JS or WASM", async ({ page, request }) => {
  const assets: string[] = [];
  page.on("response", (response) => assets.push(response.url()));
  await page.goto("/");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  const served = new Set(assets.filter((url) => url.startsWith(new URL(page.url()).origin)));
  expect([...served].some((url) => url.endsWith(".wasm"))).toBe(true);
  expect([...served].some((url) => url.endsWith(".js"))).toBe(true);
  for (const url of served) {
    const body = Buffer.from(await (await request.get(url)).body());
    expect(body.includes(Buffer.from(TOKEN)), `${url} contains the token`).toBe(false);
    expect(body.includes(Buffer.from("REPLACE_WITH_PROD_TOKEN")), `${url} has the placeholder`).toBe(false);
  }
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
