// The Playwright `test` every spec that signs in uses: it adds `signIn`, the page's sign-in form.
import { expect, Page, test as base } from "@playwright/test";
import { TOKEN } from "./env";

export { expect } from "@playwright/test";

/**
 * Signs `page` in through the form, as a person would: opens the app first if the page is still
 * blank, waits until it is hydrated, types `credential` and presses "Sign in". With the real
 * token (the default) or an API key (`ingest_…`) it also waits until the signed-in app is
 * ready: the header says who is signed in and, on the home page, "Start ingest" is enabled.
 * With anything else it leaves the refusal for the test to check. Exported for pages of other
 * browser contexts (a second person).
 */
export async function signInOn(page: Page, credential: string = TOKEN): Promise<void> {
  if (page.url() === "about:blank") {
    await page.goto("/");
  }
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await page.getByLabel("API token").fill(credential);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (credential === TOKEN || credential.startsWith("ingest_")) {
    await expect(page.locator("#signed-in-as")).toHaveText(/^Signed in as /);
    if (new URL(page.url()).pathname === "/") {
      await expect(page.getByRole("button", { name: "Start ingest" })).toBeEnabled();
    }
  }
}

type Fixtures = {
  /** `signInOn` for the test's own page. */
  signIn: (credential?: string) => Promise<void>;
};

export const test = base.extend<Fixtures>({
  signIn: async ({ page }, use) => {
    await use((credential?: string) => signInOn(page, credential));
  },
});
