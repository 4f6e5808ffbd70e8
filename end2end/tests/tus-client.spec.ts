// The official tus client (tus-js-client, in Node) against Ingest's /api/uploads: a chunked
// upload, and an interrupted one that a fresh client instance resumes from the server's offset.
import { expect, test, APIRequestContext } from "@playwright/test";
import { createHash, randomBytes } from "node:crypto";
import * as tus from "tus-js-client";
import { BASE_URL, TOKEN } from "./env";

const AUTH = { Authorization: `Bearer ${TOKEN}` };
const MiB = 1024 * 1024;

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function options(extra: Partial<tus.UploadOptions>): tus.UploadOptions {
  return {
    endpoint: `${BASE_URL}/api/uploads`,
    headers: AUTH,
    chunkSize: MiB,
    retryDelays: [],
    metadata: {
      filename: "tus.bin",
      filetype: "application/octet-stream",
      metadata: JSON.stringify({ client: "tus-js-client" }),
    },
    ...extra,
  };
}

/** Runs an upload to its end. */
function finish(data: Buffer, extra: Partial<tus.UploadOptions>): Promise<tus.Upload> {
  return new Promise((resolve, reject) => {
    const upload: tus.Upload = new tus.Upload(
      data,
      options({ ...extra, onError: reject, onSuccess: () => resolve(upload) }),
    );
    upload.start();
  });
}

async function completed(request: APIRequestContext, url: string) {
  const id = url.split("/").pop();
  let status: any;
  await expect
    .poll(async () => {
      status = await (await request.get(`/api/status/${id}`, { headers: AUTH })).json();
      return status.status;
    }, { timeout: 30_000 })
    .toBe("completed");
  return status;
}

test("tus-js-client uploads a file in 1 MiB chunks and the job has its digest", async ({ request }) => {
  const data = randomBytes(5 * MiB + 123);
  const upload = await finish(data, {});
  expect(upload.url).toMatch(/\/api\/uploads\/[0-9a-f-]{36}$/);
  const status = await completed(request, upload.url!);
  expect(status.sha256).toBe(sha256(data));
  expect(status.size).toBe(data.length);
  expect(status.filename).toBe("tus.bin");
  expect(status.metadata).toEqual({ client: "tus-js-client" });
});

test("an interrupted tus-js-client upload is resumed by a fresh client from the server's offset", async ({
  request,
}) => {
  const data = randomBytes(8 * MiB);
  // The first client stops after three chunks, as if the process died.
  const first = await new Promise<tus.Upload>((resolve, reject) => {
    const upload: tus.Upload = new tus.Upload(
      data,
      options({
        onError: reject,
        onChunkComplete: (_chunk, sent) => {
          if (sent >= 3 * MiB) upload.abort().then(() => resolve(upload), reject);
        },
      }),
    );
    upload.start();
  });
  const head = await request.head(first.url!, { headers: { ...AUTH, "Tus-Resumable": "1.0.0" } });
  expect(head.status()).toBe(200);
  const offset = Number(head.headers()["upload-offset"]);
  expect(offset).toBeGreaterThanOrEqual(3 * MiB);
  expect(offset).toBeLessThan(data.length);
  expect(Number(head.headers()["upload-length"])).toBe(data.length);

  // A new client instance, knowing only the upload's URL, continues where the server is.
  let firstReport = -1;
  const second = await finish(data, {
    uploadUrl: first.url!,
    onProgress: (sent) => {
      if (firstReport < 0) firstReport = sent;
    },
  });
  expect(second.url).toBe(first.url);
  expect(firstReport).toBeGreaterThanOrEqual(offset);
  const status = await completed(request, second.url!);
  expect(status.sha256).toBe(sha256(data));
});
