import http from "node:http";
import { greet } from "./greet.js";
const port = Number(process.env.PORT || 8080);
http.createServer((req, res) => res.end(greet(import.meta.url.startsWith("file:") ? "esm" : "?")))
  .listen(port, process.env.HOST || "127.0.0.1");
