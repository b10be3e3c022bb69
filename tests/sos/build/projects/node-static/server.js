// Serves STATIC_ROOT (default: the working directory) with http-server, on $HOST:$PORT.
const { createServer } = require("http-server");

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || "127.0.0.1";
const root = process.env.STATIC_ROOT || process.cwd();

createServer({ root, cache: -1, showDir: true }).listen(port, host, () => {
  console.log(`http-server serving ${root} on http://${host}:${port}`);
});
