const http = require("http");
const { greeting } = require("./greeting");

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || "127.0.0.1";

http
  .createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ service: "node-hello", greeting: greeting(req.url) }));
  })
  .listen(port, host, () => console.log(`listening on http://${host}:${port}`));
