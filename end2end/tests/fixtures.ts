// The Playwright `test` every spec that signs in uses: it adds `signIn`, the page's sign-in form.
import { expect, test as base } from "@playwright/test";
import { TOKEN } from "./env";

export { expect } from "@playwright/test";

type Fixtures = {
  /**
   * Signs in through the form, as a person would: opens the app first if the page is still
   * blank, waits until it is hydrated, types `token` and presses "Sign in". With the real token
   * (the default) it also waits until the signed-in app is ready ("Start ingest" enabled); with
   * another it leaves the refusal for the test to check.
   */
  signIn: (token?: string) => Promise<void>;
};

export const test = base.extend<Fixtures>({
  signIn: async ({ page }, use) => {
    await use(async (token = TOKEN) => {
      if (page.url() === "about:blank") {
        await page.goto("/");
      }
      await expect(page.locator("[data-hydrated=true]")).toBeVisible();
      await page.getByLabel("API token").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      if (token === TOKEN) {
        await expect(page.getByRole("button", { name: "Start ingest" })).toBeEnabled();
      }
    });
  },
});
