// Where the test server listens and the token it accepts (for API calls from tests only).
export const PORT = process.env.INGEST_E2E_PORT ?? "3107";
export const BASE_URL = `http://127.0.0.1:${PORT}`;
export const TOKEN = process.env.INGEST_E2E_TOKEN ?? "e2e-token-7c1d93b0a5f2486e";
