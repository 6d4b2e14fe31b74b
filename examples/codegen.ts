import type { CodegenConfig } from "@graphql-codegen/cli";
import {
  type DefinitionNode,
  type DocumentNode,
  type FragmentDefinitionNode,
  Kind,
  type OperationDefinitionNode,
  print,
  visit,
} from "graphql";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

// graphql-codegen resolves paths, plugins and the import between the two outputs against the
// working directory. Work from this file's directory, so `graphql-codegen --config
// examples/codegen.ts` (from the repo root) and `npm run codegen` (from examples/) are the same.
process.chdir(dirname(fileURLToPath(import.meta.url)));

// Shared by both outputs: the same scalar mapping and enum style, so the two files agree.
const common = {
  // DateTime is an ISO 8601 string on the wire. Any other custom scalar fails the build instead of
  // quietly becoming `any`.
  strictScalars: true,
  scalars: { DateTime: "string" },
  // Enums as string unions of the wire values (no runtime code to emit).
  enumsAsTypes: true,
  useTypeImports: true,
  // Names exactly as in the schema (camelCase fields, SCREAMING_CASE enum values): never renamed.
  namingConvention: "keep",
};

// A tiny local plugin: `export const BoardDocument = "query Board(...) {...} fragment TaskFields ..."`
// for every operation, with the fragments it spreads (transitively). The client sends these
// strings, so the text on the wire is exactly the text the types above were generated from.
const operationDocuments = {
  plugin(_schema: unknown, files: ReadonlyArray<{ document?: DocumentNode }>): string {
    const definitions: DefinitionNode[] = files.flatMap((file) => [...(file.document?.definitions ?? [])]);
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const definition of definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
    }
    const spreadIn = (node: OperationDefinitionNode | FragmentDefinitionNode): string[] => {
      const names: string[] = [];
      visit(node, { FragmentSpread: (spread) => void names.push(spread.name.value) });
      return names;
    };
    const out: string[] = [];
    for (const operation of definitions) {
      if (operation.kind !== Kind.OPERATION_DEFINITION) continue;
      if (!operation.name) throw new Error("every operation in operations/ needs a name");
      const needed = new Set<string>();
      const pending = spreadIn(operation);
      for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
        if (needed.has(name)) continue;
        const fragment = fragments.get(name);
        if (!fragment) throw new Error(`unknown fragment ${name} in ${operation.name.value}`);
        needed.add(name);
        pending.push(...spreadIn(fragment));
      }
      const text = [operation, ...[...needed].sort().map((name) => fragments.get(name)!)]
        .map((node) => print(node))
        .join("\n\n");
      out.push(`export const ${operation.name.value}Document = ${JSON.stringify(text)};`);
    }
    return out.join("\n\n") + "\n";
  },
};

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: "operations/**/*.graphql",
  overwrite: true,
  // A documents glob that matches nothing is an error, not an empty file.
  ignoreNoDocuments: false,
  // "operation-documents" is the local plugin above; everything else is an npm package.
  pluginLoader: (name: string) =>
    name === "operation-documents" ? Promise.resolve(operationDocuments) : import(name),
  generates: {
    // `typescript`: every schema type, input and enum (Task, CreateTaskInput, TaskStatus, ...).
    "generated/schema.ts": {
      plugins: ["typescript"],
      config: common,
    },
    // `typescript-operations`: one result type and one variables type per operation in operations/
    // (BoardQuery, BoardQueryVariables, MoveTaskMutation, ...) and one type per fragment
    // (TaskFieldsFragment). Since v6 it would also emit the inputs and enums it uses; it imports
    // them from schema.ts instead (the path is relative to examples/), so the two files never
    // declare the same name twice. Then a `...Document` string per operation (see above).
    "generated/graphql.ts": {
      plugins: ["typescript-operations", "operation-documents"],
      config: { ...common, importSchemaTypesFrom: "generated/schema.ts" },
    },
  },
};

export default config;
