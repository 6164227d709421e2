import type { Permission, Role } from "./model.js";
import type { EnvironmentContext } from "./auth.js";
import type { Runtime } from "./runtime.js";
import { ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "./errors.js";
import { newId } from "./ids.js";
import {
  checkCount,
  MAX_DESCRIPTION_LENGTH,
  numberedPageRequest,
  optionalText,
  pageRequest,
  readNumberedPage,
  requireId,
  requirePermissionKey,
  requireText,
  toPage,
  type NumberedPage,
  type NumberedPageInput,
} from "./validate.js";
import { StoreConflictError, type StoreReader } from "../store/store.js";

export interface PermissionInput {
  key: string;
  description: string;
  category: string;
}

/**
 * The permission catalog and roles of one environment. Keys are immutable once created; a role's
 * permission set can change at any time and the change applies to every holder at once.
 */
export class CatalogService {
  constructor(private readonly rt: Runtime) {}

  /** All-or-nothing: any bad item refuses the whole batch with an error naming it. */
  async batchCreatePermissions(ctx: EnvironmentContext, inputs: PermissionInput[]): Promise<{ permissions: Permission[]; revision: number }> {
    checkCount(inputs.length, this.rt.limits.maxBatchItems, "permissions", "permissions per call");
    if (inputs.length === 0) throw new InvalidArgumentError("permissions", "must contain at least one permission");
    const seen = new Map<string, number>();
    const envId = ctx.environment.id;
    const now = this.rt.clock.now();
    const permissions: Permission[] = inputs.map((input, i) => {
      const key = requirePermissionKey(input.key, `permissions[${i}].key`);
      const dup = seen.get(key);
      if (dup !== undefined) {
        throw new ConflictError(`permission ${JSON.stringify(key)} is listed twice: permissions[${dup}] and permissions[${i}]`, `permissions[${i}].key`, "catalog.permission_exists");
      }
      seen.set(key, i);
      return {
        id: newId(),
        environmentId: envId,
        key,
        description: optionalText(input.description, `permissions[${i}].description`, MAX_DESCRIPTION_LENGTH),
        category: optionalText(input.category, `permissions[${i}].category`),
        createdAt: now,
        updatedAt: now,
      };
    });
    return this.rt.writeIn(envId, async (tx, effects) => {
      const existing = await tx.getPermissionsByKeys(envId, [...seen.keys()]);
      if (existing.length > 0) {
        const i = seen.get(existing[0].key)!;
        throw new ConflictError(`permission ${JSON.stringify(existing[0].key)} already exists`, `permissions[${i}].key`, "catalog.permission_exists");
      }
      await tx.insertPermissions(permissions);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => permissions.forEach((p) => this.rt.engine.putPermission(envId, p.key)));
      return { permissions, revision };
    });
  }

  /** `category` "" = every category. */
  async listPermissions(ctx: EnvironmentContext, category: string, pageSize: number, pageToken: string) {
    const page = pageRequest(pageSize, pageToken, this.rt.limits);
    const rows = await this.rt.store.reader.listPermissions(ctx.environment.id, category || undefined, { limit: page.pageSize + 1, afterId: page.afterId });
    return toPage(rows, page);
  }

  /** listPermissions as a numbered page with the total count (of the category, if given). */
  async listPermissionsNumbered(ctx: EnvironmentContext, category: string, page: NumberedPageInput): Promise<NumberedPage<Permission>> {
    const req = numberedPageRequest(page, this.rt.limits);
    const envId = ctx.environment.id;
    const only = category || undefined;
    return readNumberedPage(
      this.rt.store,
      req,
      (reader, window) => reader.listPermissions(envId, only, window),
      (reader) => reader.countPermissions(envId, only),
    );
  }

  async updatePermission(
    ctx: EnvironmentContext,
    id: string,
    patch: { description?: string; category?: string; key?: string },
  ): Promise<{ permission: Permission; revision: number }> {
    requireId(id, "id");
    const description = patch.description === undefined ? undefined : optionalText(patch.description, "description", MAX_DESCRIPTION_LENGTH);
    const category = patch.category === undefined ? undefined : optionalText(patch.category, "category");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getPermission(envId, id);
      if (!current) throw new NotFoundError("permission", id, "id");
      if (patch.key !== undefined && patch.key !== current.key) {
        throw new InvalidArgumentError("key", `permission keys are immutable: ${JSON.stringify(current.key)} cannot become ${JSON.stringify(patch.key)}; create a new permission instead`, "catalog.key_immutable");
      }
      const updatedAt = this.rt.clock.now();
      await tx.updatePermission(id, { description, category, updatedAt });
      const revision = await this.rt.bump(tx, effects, envId);
      return {
        permission: { ...current, description: description ?? current.description, category: category ?? current.category, updatedAt },
        revision,
      };
    });
  }

  /** Deletes the permission and removes it from every role. */
  async deletePermission(ctx: EnvironmentContext, id: string): Promise<number> {
    requireId(id, "id");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getPermission(envId, id);
      if (!current) throw new NotFoundError("permission", id, "id");
      await tx.deletePermission(id);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.removePermission(envId, current.key));
      return revision;
    });
  }

  async createRole(ctx: EnvironmentContext, input: { name: string; description: string; permissionKeys: string[] }): Promise<{ role: Role; revision: number }> {
    const name = requireText(input.name, "name");
    const description = optionalText(input.description, "description", MAX_DESCRIPTION_LENGTH);
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const permissions = await this.resolveKeys(tx, envId, input.permissionKeys);
      const now = this.rt.clock.now();
      const role: Role = {
        id: newId(),
        environmentId: envId,
        name,
        description,
        permissionKeys: permissions.map((p) => p.key).sort(),
        createdAt: now,
        updatedAt: now,
      };
      try {
        await tx.insertRole({ ...role }, permissions.map((p) => p.id));
      } catch (err) {
        if (err instanceof StoreConflictError && err.constraint === "unique") {
          throw new ConflictError(`a role named ${JSON.stringify(name)} already exists`, "name", "catalog.role_exists");
        }
        throw err;
      }
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.putRole(envId, role));
      return { role, revision };
    });
  }

  async getRole(ctx: EnvironmentContext, id: string): Promise<Role> {
    requireId(id, "id");
    const role = await this.rt.store.reader.getRole(ctx.environment.id, id);
    if (!role) throw new NotFoundError("role", id, "id");
    return role;
  }

  async listRoles(ctx: EnvironmentContext, pageSize: number, pageToken: string) {
    const page = pageRequest(pageSize, pageToken, this.rt.limits);
    const rows = await this.rt.store.reader.listRoles(ctx.environment.id, { limit: page.pageSize + 1, afterId: page.afterId });
    return toPage(rows, page);
  }

  /** listRoles as a numbered page with the environment's role count; items carry their permission keys. */
  async listRolesNumbered(ctx: EnvironmentContext, page: NumberedPageInput): Promise<NumberedPage<Role>> {
    const req = numberedPageRequest(page, this.rt.limits);
    const envId = ctx.environment.id;
    return readNumberedPage(
      this.rt.store,
      req,
      (reader, window) => reader.listRoles(envId, window),
      (reader) => reader.countRoles(envId),
    );
  }

  async updateRole(ctx: EnvironmentContext, id: string, patch: { name?: string; description?: string }): Promise<{ role: Role; revision: number }> {
    requireId(id, "id");
    const name = patch.name === undefined ? undefined : requireText(patch.name, "name");
    const description = patch.description === undefined ? undefined : optionalText(patch.description, "description", MAX_DESCRIPTION_LENGTH);
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getRole(envId, id);
      if (!current) throw new NotFoundError("role", id, "id");
      const updatedAt = this.rt.clock.now();
      try {
        await tx.updateRole(id, { name, description, updatedAt });
      } catch (err) {
        if (err instanceof StoreConflictError && err.constraint === "unique") {
          throw new ConflictError(`a role named ${JSON.stringify(name)} already exists`, "name", "catalog.role_exists");
        }
        throw err;
      }
      const role = { ...current, name: name ?? current.name, description: description ?? current.description, updatedAt };
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.putRole(envId, role));
      return { role, revision };
    });
  }

  /** Replaces the role's permission set; every holder's access changes with this one write. */
  async setRolePermissions(ctx: EnvironmentContext, id: string, keys: string[]): Promise<{ role: Role; revision: number }> {
    requireId(id, "id");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getRole(envId, id);
      if (!current) throw new NotFoundError("role", id, "id");
      const permissions = await this.resolveKeys(tx, envId, keys);
      const updatedAt = this.rt.clock.now();
      await tx.setRolePermissions(id, permissions.map((p) => p.id), updatedAt);
      const role = { ...current, permissionKeys: permissions.map((p) => p.key).sort(), updatedAt };
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.putRole(envId, role));
      return { role, revision };
    });
  }

  /** Refuses a role that still has assignments unless `cascade` deletes them too. */
  async deleteRole(ctx: EnvironmentContext, id: string, cascade: boolean): Promise<{ deletedAssignments: number; revision: number }> {
    requireId(id, "id");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getRole(envId, id);
      if (!current) throw new NotFoundError("role", id, "id");
      const held = await tx.countAssignmentsOfRole(envId, id);
      if (held > 0 && !cascade) {
        throw new FailedPreconditionError(`role ${id} is held by ${held} assignment(s); delete them first or pass cascade = true`, "cascade", "catalog.role_in_use");
      }
      const removed = held > 0 ? await tx.deleteAssignmentsOfRole(envId, id) : [];
      await tx.deleteRole(id);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => {
        for (const a of removed) this.rt.engine.removeAssignment(envId, a);
        this.rt.engine.removeRole(envId, id);
      });
      return { deletedAssignments: removed.length, revision };
    });
  }

  /** Resolves permission keys (deduplicated) to permissions; an unknown key is NOT_FOUND naming it. */
  private async resolveKeys(reader: StoreReader, envId: string, keys: string[]): Promise<Permission[]> {
    checkCount(keys.length, this.rt.limits.maxBatchItems, "permission_keys", "permission keys per role");
    const unique = [...new Set(keys)];
    keys.forEach((k, i) => requirePermissionKey(k, `permission_keys[${i}]`));
    const found = await reader.getPermissionsByKeys(envId, unique);
    if (found.length !== unique.length) {
      const have = new Set(found.map((p) => p.key));
      const i = keys.findIndex((k) => !have.has(k));
      throw new NotFoundError("permission", keys[i], `permission_keys[${i}]`);
    }
    return found;
  }
}
