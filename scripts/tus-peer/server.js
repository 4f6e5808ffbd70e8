// The reference tus server for scripts/bench: @tus/server with @tus/file-store, storing uploads
// in a directory, on 127.0.0.1. Usage: node server.js PORT DIRECTORY
const { Server } = require("@tus/server");
const { FileStore } = require("@tus/file-store");

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port: Number(port) }, () => console.log("listening"));
