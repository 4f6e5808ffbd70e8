import { expect, test } from "@playwright/test";
import { BASE_URL } from "./env";

test("Swagger UI renders the API document from the binary, fetching nothing elsewhere", async ({
  page,
}, testInfo) => {
  const elsewhere: string[] = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(BASE_URL) && !request.url().startsWith("data:")) {
      elsewhere.push(request.url());
    }
  });
  await page.goto("/docs/");
  await expect(page.locator(".swagger-ui .info .title")).toContainText("Ingest");
  await expect(page.locator(".opblock-summary-path", { hasText: "/api/ingest" })).toBeVisible();
  await expect(page.locator(".opblock-summary-path", { hasText: "/ws/status/{job_id}" })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("docs.png"), fullPage: true });
  expect(elsewhere).toEqual([]);
});
