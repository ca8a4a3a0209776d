// Removes every route the backends own (by route protocol), in one batch.
import { delRouteArgv, listRoutes } from "../../kernel/peer-route.js";
import { writeBatch, type KernelContext } from "../../kernel/tracked.js";

export async function deleteBackendRoutes(ctx: KernelContext, proto: number): Promise<void> {
  const routes = await listRoutes(ctx, proto);
  const failed = await writeBatch(
    ctx,
    "ip",
    routes.map((r) => delRouteArgv(r.dst, proto)),
  );
  if (failed.size > 0) {
    throw new Error(
      `could not remove backend routes: ${[...failed].map(([i, m]) => `${routes[i].dst}: ${m}`).join("; ")}`,
    );
  }
}
