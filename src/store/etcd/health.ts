// GET /health of an etcd member, over plain HTTP or client-certificate TLS: true when the member
// has a leader and serves reads. For launchers that wait for etcd (tests, the lab).
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { readTlsFiles, type EtcdTlsFiles } from "./config.js";

export function etcdHealthy(clientUrl: string, tls?: EtcdTlsFiles, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const url = `${clientUrl}/health`;
    const onResponse = (res: import("node:http").IncomingMessage): void => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => {
        try {
          resolve((JSON.parse(body) as { health?: string }).health === "true");
        } catch {
          resolve(false);
        }
      });
    };
    let req;
    if (clientUrl.startsWith("https:")) {
      const files = tls ? readTlsFiles(tls) : undefined;
      // servername: localhost (the certificate's name too) spares Node's warning about IP server names.
      req = httpsRequest(
        url,
        {
          ca: files?.rootCertificate,
          cert: files?.certChain,
          key: files?.privateKey,
          timeout: timeoutMs,
          servername: "localhost",
        },
        onResponse,
      );
    } else {
      req = httpRequest(url, { timeout: timeoutMs }, onResponse);
    }
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
