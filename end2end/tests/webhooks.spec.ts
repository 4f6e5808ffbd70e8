// The Webhooks page: register an endpoint pointing at a receiver this test runs on loopback,
// see the secret once, see a job's deliveries arrive in the log (and the receiver get them
// signed), pause and enable the endpoint, ping it, send a delivery again, remove it.
import { createHmac } from "node:crypto";
import { createServer, IncomingMessage, Server } from "node:http";
import { AddressInfo } from "node:net";
import { expect, test } from "./fixtures";
import { TOKEN } from "./env";

type Received = { id: string; timestamp: string; signature: string; body: string };

/** A receiver answering 204 to every POST and keeping what it got. */
async function startReceiver(): Promise<{ server: Server; url: string; got: Received[] }> {
  const got: Received[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      got.push({
        id: String(request.headers["webhook-id"]),
        timestamp: String(request.headers["webhook-timestamp"]),
        signature: String(request.headers["webhook-signature"]),
        body: Buffer.concat(chunks).toString("utf8"),
      });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/hook`, got };
}

/** The Standard Webhooks signature of a message, as the receiver should compute it. */
function sign(secret: string, message: Received): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const signed = `${message.id}.${message.timestamp}.${message.body}`;
  return "v1," + createHmac("sha256", key).update(signed).digest("base64");
}

test("an endpoint registered in the page receives signed events, shows its deliveries, and can be paused, pinged, replayed and removed", async ({
  page,
  request,
  signIn,
}) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const receiver = await startReceiver();
  try {
    await page.goto("/webhooks");
    await signIn();
    await expect(page.getByRole("heading", { name: "Webhooks", level: 1 })).toBeVisible();

    // A URL that is not one is refused in words, and nothing is registered.
    await page.getByLabel("URL").fill("ftp://example.com/hook");
    await page.getByRole("button", { name: "Register endpoint" }).click();
    await expect(page.locator(".outcome .error")).toContainText("http");

    await page.getByLabel("URL").fill(receiver.url);
    await page.getByLabel("Events").selectOption("*");
    await page.getByLabel("Description (optional)").fill("e2e receiver");
    await page.getByRole("button", { name: "Register endpoint" }).click();
    const secret = (await page.locator(".issued-key .secret").textContent())!.trim();
    expect(secret).toMatch(/^whsec_/);
    const card = page.getByRole("region", { name: receiver.url });
    await expect(card).toBeVisible();
    await expect(card.locator(".badge").first()).toHaveText("enabled");

    // A job made through the API: its events reach the receiver, signed with the secret shown.
    const made = await request.post("/api/ingest", {
      headers: { Authorization: `Bearer ${TOKEN}` },
      data: { metadata: JSON.stringify({ from: "webhooks e2e" }) },
    });
    expect(made.status()).toBe(202);
    const { job_id: jobId } = await made.json();
    await expect.poll(() => receiver.got.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
    for (const message of receiver.got) {
      expect(message.signature.split(" ")).toContain(sign(secret, message));
      expect(JSON.parse(message.body).data.job_id).toBe(jobId);
    }
    const types = receiver.got.map((message) => JSON.parse(message.body).type).sort();
    expect(types).toEqual(["job.completed", "job.created"]);

    // The log shows both, delivered; the secret is gone after the next action.
    await page.getByRole("button", { name: "Refresh" }).click();
    await expect(page.locator(".issued-key")).toHaveCount(0);
    const rows = card.locator("tbody tr");
    await expect(rows).toHaveCount(2);
    await expect(rows.filter({ hasText: "job.completed" }).locator(".badge")).toHaveText("delivered");
    await expect(rows.filter({ hasText: "job.created" }).getByRole("link")).toHaveAttribute(
      "href",
      `/jobs/${jobId}`,
    );

    // Paused: the badge says so and a ping is not offered; enabled again, a ping arrives.
    await card.getByRole("button", { name: "Pause" }).click();
    await expect(card.locator(".badge").first()).toHaveText("disabled");
    await expect(card.locator(".error")).toContainText("disabled by request");
    await expect(card.getByRole("button", { name: "Send a ping" })).toBeDisabled();
    await card.getByRole("button", { name: "Enable" }).click();
    await expect(card.locator(".badge").first()).toHaveText("enabled");
    await card.getByRole("button", { name: "Send a ping" }).click();
    await expect(page.locator(".outcome .notice")).toContainText("Ping queued");
    await expect
      .poll(() => receiver.got.some((message) => JSON.parse(message.body).type === "webhook.ping"), {
        timeout: 20_000,
      })
      .toBe(true);

    // Sent again: the same webhook-id arrives a second time.
    const before = receiver.got.length;
    await page.getByRole("button", { name: "Refresh" }).click();
    const completed = card.locator("tbody tr").filter({ hasText: "job.completed" });
    await completed.getByRole("button", { name: "Send again" }).click();
    await expect.poll(() => receiver.got.length, { timeout: 20_000 }).toBeGreaterThan(before);
    const resent = receiver.got[receiver.got.length - 1];
    expect(JSON.parse(resent.body).type).toBe("job.completed");
    expect(receiver.got.filter((message) => message.id === resent.id).length).toBe(2);

    // Removing asks first; "Keep it" keeps it.
    await card.getByRole("button", { name: "Remove", exact: true }).click();
    await card.getByRole("button", { name: "Keep it" }).click();
    await expect(card).toBeVisible();
    await card.getByRole("button", { name: "Remove", exact: true }).click();
    await card.getByRole("button", { name: "Yes, remove it" }).click();
    await expect(page.getByText("No endpoints yet.")).toBeVisible();
    expect(errors).toEqual([]);
  } finally {
    receiver.server.close();
  }
});
