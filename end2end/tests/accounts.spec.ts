// The Accounts page and "Signed in as": an admin makes an account and a key in the browser, a
// second person signs in with that key in a browser context of their own, and revoking the key
// ends that person's session.
import { expect, signInOn, test } from "./fixtures";
import { Locator, Page } from "@playwright/test";

/** A name no earlier run of this suite has used (the data dir is new per run, tests are not). */
function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** The section of the Accounts page about one account (a region named by its heading). */
function accountSection(page: Page, name: string): Locator {
  return page.getByRole("region", { name, exact: true });
}

/** Creates an account through the page's form and waits until it is listed. */
async function createAccount(page: Page, name: string, role?: "admin" | "member"): Promise<Locator> {
  await page.getByLabel("Account name").fill(name);
  if (role) {
    await page.getByLabel("Role").selectOption(role);
  }
  await page.getByRole("button", { name: "Create account" }).click();
  const section = accountSection(page, name);
  await expect(section).toBeVisible();
  return section;
}

/** Starts a metadata-only job from the home page and answers its id. */
async function startJob(page: Page, metadata: object): Promise<string> {
  await page.getByRole("link", { name: "Start", exact: true }).click();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await page.getByLabel("Metadata (optional JSON object)").fill(JSON.stringify(metadata));
  await page.getByRole("button", { name: "Start ingest" }).click();
  const id = page.locator(".job").first().locator(".job-id code");
  await expect(id).toHaveText(/^[0-9a-f-]{36}$/);
  return (await id.textContent())!.trim();
}

test("an admin makes a member and a key; the member signs in with it, sees only its own jobs, and revoking the key signs it out", async ({
  page,
  context,
  browser,
  signIn,
}, testInfo) => {
  // A panic in the wasm (say, a hydration mismatch) would surface here.
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(`admin: ${error.message}`));
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await signIn();
  await expect(page.locator("#signed-in-as")).toHaveText("Signed in as admin (admin)");

  // The admin's nav leads to the Accounts page.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Accounts" }).click();
  await expect(page).toHaveURL(/\/accounts$/);
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await expect(page.getByRole("heading", { name: "Accounts", level: 1 })).toBeVisible();

  const name = uniqueName("member");
  await expect(page.getByLabel("Role")).toHaveValue("member");
  const account = await createAccount(page, name);
  await expect(account.locator(".badge")).toHaveText("member");
  await expect(account).toContainText("No keys yet.");

  // The key is shown once, read-only, with a Copy button that really copies it.
  await account.getByRole("button", { name: "Create key" }).click();
  const field = page.getByLabel(`New key for ${name}`);
  await expect(field).toHaveValue(/^ingest_[0-9a-f]{12}_[0-9a-f]+$/);
  await expect(field).toHaveAttribute("readonly", "");
  await expect(account).toContainText("it will not be shown again");
  const key = await field.inputValue();
  const keyId = key.split("_")[1];
  const keyRow = account.getByRole("row").filter({ hasText: keyId });
  await expect(keyRow).toHaveAttribute("data-revoked", "false");
  await account.getByRole("button", { name: "Copy", exact: true }).click();
  await expect(account.getByRole("button", { name: "Copied", exact: true })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(key);
  await page.screenshot({ path: testInfo.outputPath("accounts-new-key.png"), fullPage: true });
  // Nothing is revoked yet: the new key is the account's one Revoke button.
  await expect(account.getByRole("button", { name: "Revoke" })).toHaveCount(1);

  // A reload forgets the key: the server never sends it again.
  await page.reload();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await expect(keyRow).toBeVisible();
  await expect(page.getByLabel(`New key for ${name}`)).toHaveCount(0);
  expect(await page.content()).not.toContain(key);

  // The admin starts a job of its own.
  const adminJob = await startJob(page, { owner: "admin", run: name });

  // A second person, in a browser context of their own, signs in with the key.
  const memberContext = await browser.newContext();
  try {
    const member = await memberContext.newPage();
    member.on("pageerror", (error) => errors.push(`member: ${error.message}`));
    await signInOn(member, key);
    await expect(member.locator("#signed-in-as")).toHaveText(`Signed in as ${name} (member)`);
    await expect(member.getByRole("button", { name: "Sign out" })).toBeVisible();
    await expect(member.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Accounts" })).toHaveCount(0);
    const memberJob = await startJob(member, { owner: name });

    // Its history shows its own job and not the admin's, and offers no owner filter.
    await member.getByRole("link", { name: "History" }).click();
    await expect(member.locator(".history-row").filter({ hasText: memberJob })).toHaveCount(1);
    await expect(member.locator(".history-row").filter({ hasText: adminJob })).toHaveCount(0);
    await expect(member.getByLabel("Owner")).toHaveCount(0);
    await member.screenshot({ path: testInfo.outputPath("member-history.png"), fullPage: true });

    // The admin's history shows every job with its owner, and filters by owner.
    await page.goto("/jobs");
    await expect(page.locator("[data-hydrated=true]")).toBeVisible();
    const memberRow = page.locator(".history-row").filter({ hasText: memberJob });
    await expect(memberRow.locator(".owner")).toHaveText(name);
    await expect(page.locator(".history-row").filter({ hasText: adminJob }).locator(".owner")).toHaveText("admin");
    // The filter applies as it is typed, without a page load.
    await page.getByLabel("Owner").fill(name);
    await expect(page).toHaveURL(new RegExp(`owner=${name}`));
    await expect(memberRow).toHaveCount(1);
    await expect(page.locator(".history-row").filter({ hasText: adminJob })).toHaveCount(0);

    // The Accounts page is not for members, and the server refuses their calls.
    await member.goto("/accounts");
    await expect(member.locator("[data-hydrated=true]")).toBeVisible();
    await expect(member.getByText("Only admins manage accounts")).toBeVisible();
    await expect(member.getByLabel("Account name")).toHaveCount(0);
    await expect(member.getByText(name, { exact: true })).toHaveCount(0);
    const refused = await member.request.post("/rpc/list_accounts", { form: {} });
    expect(refused.status()).toBe(403);
    expect(await refused.text()).toContain("is a member");
    expect((await member.request.get("/api/accounts")).status()).toBe(403);
    await member.screenshot({ path: testInfo.outputPath("member-accounts.png"), fullPage: true });

    // Back in the admin's context: revoke the key.
    await page.getByRole("link", { name: "Accounts" }).click();
    await expect(page.locator("[data-hydrated=true]")).toBeVisible();
    await keyRow.getByRole("button", { name: "Revoke" }).click();
    await expect(keyRow).toHaveAttribute("data-revoked", "true");
    await expect(keyRow.getByRole("button", { name: "Revoke" })).toHaveCount(0);
    await expect(page.locator(".outcome")).toContainText(`Revoked key ${keyId}`);

    // The member's next navigation lands on the sign-in form.
    await member.getByRole("link", { name: "History" }).click();
    await expect(member).toHaveURL(/\/jobs$/);
    await expect(member.getByLabel("API token")).toBeVisible();
    await expect(member.locator("#signed-in-as")).toHaveCount(0);
    await expect(member.locator(".history-row")).toHaveCount(0);
    await member.screenshot({ path: testInfo.outputPath("member-signed-out.png"), fullPage: true });
    expect(errors).toEqual([]);
  } finally {
    await memberContext.close();
  }
});

test("refusals read in plain words; a key can expire; removing an account takes a confirmation and revokes its keys", async ({
  page,
  signIn,
  request,
}) => {
  await signIn();
  await page.goto("/accounts");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();

  // Refused by the page before it asks the server, and by the server.
  await page.getByLabel("Account name").fill("no spaces");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toHaveText("An account name is 1 to 64 letters, digits, '-' or '_'");
  await page.getByLabel("Account name").fill("admin");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toContainText("Admin is the built-in account of INGEST_TOKEN");

  const name = uniqueName("ops");
  const account = await createAccount(page, name, "admin");
  await expect(account.locator(".badge")).toHaveText("admin");
  await expect(page.locator(".outcome")).toContainText(`Created account ${name} (admin).`);
  await page.getByLabel("Account name").fill(name);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toContainText(`An account named ${name} already exists`);

  // An expiry out of range is the server's plain refusal; 30 days is shown with the key.
  const expires = account.getByLabel("Expires in days (optional)");
  await expires.fill("0");
  await account.getByRole("button", { name: "Create key" }).click();
  await expect(page.getByRole("alert")).toContainText("A key expires in 1 to 36500 days");
  await expect(page.getByLabel(`New key for ${name}`)).toHaveCount(0);
  await expires.fill("30");
  await account.getByRole("button", { name: "Create key" }).click();
  const field = page.getByLabel(`New key for ${name}`);
  await expect(field).toHaveValue(/^ingest_/);
  const key = await field.inputValue();
  const keyId = key.split("_")[1];
  await expect(account).toContainText(/expires \d{4}-\d{2}-\d{2}/);
  const row = account.getByRole("row").filter({ hasText: keyId });
  await expect(row.getByRole("cell").nth(2)).toHaveText(/^\d{4}-\d{2}-\d{2} /);
  const me = await request.get("/api/me", { headers: { Authorization: `Bearer ${key}` } });
  expect(await me.json()).toMatchObject({ account: name, role: "admin", key_id: keyId });

  // Another action hides the key for good.
  await page.getByLabel("Account name").fill(uniqueName("other"));
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.locator(".outcome")).toContainText("Created account");
  await expect(page.getByLabel(`New key for ${name}`)).toHaveCount(0);

  // Remove asks first; "Keep it" keeps it.
  await account.getByRole("button", { name: "Remove", exact: true }).click();
  await account.getByRole("button", { name: "Keep it" }).click();
  await expect(account).toBeVisible();
  await account.getByRole("button", { name: "Remove", exact: true }).click();
  await expect(account.getByRole("group", { name: `Remove ${name}?` })).toContainText("its jobs are kept");
  await account.getByRole("button", { name: `Yes, remove ${name}` }).click();
  await expect(page.locator(".outcome")).toContainText(`Removed account ${name}`);
  await expect(accountSection(page, name)).toHaveCount(0);
  const after = await request.get("/api/me", { headers: { Authorization: `Bearer ${key}` } });
  expect(after.status()).toBe(401);
});

test("without a session the Accounts page asks to sign in, and signing in there shows it", async ({
  page,
  signIn,
}) => {
  await page.goto("/accounts");
  await expect(page.getByLabel("API token")).toBeVisible();
  await expect(page.locator("#signed-in-as")).toHaveCount(0);
  await signIn();
  await expect(page.locator("#signed-in-as")).toHaveText("Signed in as admin (admin)");
  await expect(page.getByRole("heading", { name: "Accounts", level: 1 })).toBeVisible();
  await expect(page.getByLabel("Account name")).toBeVisible();
});
