/**
 * A CustomResourceDefinition as the local API server serves it: names, printer columns and the
 * structural schema, read from a CRD manifest (deploy/crd.yaml, deploy/spot-crd.yaml), then the
 * apiextensions-apiserver rules that follow from the schema: pruning of unknown fields
 * (pkg/apiserver/schema/pruning), dropping nulls (PruneNonNullableNullsWithoutDefaults) and the
 * OpenAPI validation whose findings become 422 causes. No I/O: the caller reads the file.
 */
import { parse as parseYaml } from 'yaml';

import { isJsonObject, type JsonObject, type JsonValue } from './json-patch.js';
import { invalidValue, notSupported, quote, required, typeInvalid, type FieldError } from './status.js';

export type SchemaType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';

/** The part of OpenAPI v3 a structural schema may use that this server implements. */
export interface StructuralSchema {
  type?: SchemaType;
  properties?: Readonly<Record<string, StructuralSchema>>;
  /** A schema for every other key (a map), or `true` for any value. */
  additionalProperties?: StructuralSchema | true;
  items?: StructuralSchema;
  required?: readonly string[];
  enum?: readonly JsonValue[];
  nullable?: boolean;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
  /** x-kubernetes-preserve-unknown-fields: keys the schema does not declare are kept. */
  preserveUnknownFields?: boolean;
  /** x-kubernetes-int-or-string. */
  intOrString?: boolean;
  /** x-kubernetes-list-type: map with these x-kubernetes-list-map-keys. */
  listMapKeys?: readonly string[];
}

/** An additionalPrinterColumns entry: what `kubectl get` shows. */
export interface PrinterColumn {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
  jsonPath: string;
}

export interface CustomResourceDefinition {
  group: string;
  /** The one version served (a CRD with several is refused: no conversion here). */
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  shortNames: readonly string[];
  categories: readonly string[];
  statusSubresource: boolean;
  columns: readonly PrinterColumn[];
  /** openAPIV3Schema of the version. */
  schema: StructuralSchema;
}

/** A CRD file the local API server cannot serve, with the reason. */
export class CrdError extends Error {}

/** metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"], shortened to its first sentence. */
const CREATION_TIMESTAMP_DESCRIPTION =
  'CreationTimestamp is a timestamp representing the server time when this object was created.';

/** customresource_handler.go serveDefaultColumnsIfEmpty: a CRD without columns shows its age. */
const DEFAULT_COLUMNS: readonly PrinterColumn[] = [
  { name: 'Age', type: 'date', format: '', description: CREATION_TIMESTAMP_DESCRIPTION, priority: 0, jsonPath: '.metadata.creationTimestamp' },
];

// ---------------------------------------------------------------------------------------------
// Reading a CRD manifest

function field(value: unknown, path: string, source: string): JsonObject {
  if (!isJsonObject(value)) throw new CrdError(`${source}: ${path} must be a mapping`);
  return value;
}

function text(value: unknown, path: string, source: string): string {
  if (typeof value !== 'string' || value === '') throw new CrdError(`${source}: ${path} must be a non-empty string`);
  return value;
}

function strings(value: unknown, path: string, source: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new CrdError(`${source}: ${path} must be a list of strings`);
  return value as string[];
}

/** Keys that only document a schema. */
const IGNORED_SCHEMA_KEYS = new Set(['description', 'title', 'example', 'externalDocs']);

/** OpenAPI keywords read into StructuralSchema, by their manifest name. */
const NUMBER_KEYS = ['minLength', 'maxLength', 'minimum', 'maximum', 'minItems', 'maxItems'] as const;

function schemaFrom(value: unknown, path: string, source: string): StructuralSchema {
  const node = field(value, path, source);
  const schema: { -readonly [K in keyof StructuralSchema]: StructuralSchema[K] } = {};
  for (const [key, v] of Object.entries(node)) {
    const at = `${path}.${key}`;
    if (IGNORED_SCHEMA_KEYS.has(key)) continue;
    switch (key) {
      case 'type':
        if (!['object', 'array', 'string', 'integer', 'number', 'boolean'].includes(v as string)) throw new CrdError(`${source}: ${at} ${quote(v)} is not a type`);
        schema.type = v as SchemaType;
        break;
      case 'properties':
        schema.properties = Object.fromEntries(Object.entries(field(v, at, source)).map(([k, p]) => [k, schemaFrom(p, `${at}.${k}`, source)]));
        break;
      case 'additionalProperties':
        if (v === false) break;
        schema.additionalProperties = v === true ? true : schemaFrom(v, at, source);
        break;
      case 'items':
        schema.items = schemaFrom(v, at, source);
        break;
      case 'required':
        schema.required = strings(v, at, source);
        break;
      case 'enum':
        if (!Array.isArray(v)) throw new CrdError(`${source}: ${at} must be a list`);
        schema.enum = v;
        break;
      case 'nullable':
        schema.nullable = v === true;
        break;
      case 'pattern':
        schema.pattern = text(v, at, source);
        break;
      case 'format':
        schema.format = text(v, at, source);
        break;
      case 'x-kubernetes-preserve-unknown-fields':
        schema.preserveUnknownFields = v === true;
        break;
      case 'x-kubernetes-int-or-string':
        schema.intOrString = v === true;
        break;
      case 'x-kubernetes-list-type':
        // map lists are checked for duplicate keys below; set and atomic lists need nothing here.
        break;
      case 'x-kubernetes-list-map-keys':
        schema.listMapKeys = strings(v, at, source);
        break;
      default:
        if ((NUMBER_KEYS as readonly string[]).includes(key)) {
          if (typeof v !== 'number') throw new CrdError(`${source}: ${at} must be a number`);
          schema[key as (typeof NUMBER_KEYS)[number]] = v;
          break;
        }
        // default, x-kubernetes-validations, oneOf, ...: serving them wrongly would be worse than refusing.
        throw new CrdError(`${source}: ${at} is not implemented by the local API server`);
    }
  }
  return schema;
}

function columnsFrom(value: unknown, path: string, source: string): PrinterColumn[] {
  if (value === undefined) return [...DEFAULT_COLUMNS];
  if (!Array.isArray(value)) throw new CrdError(`${source}: ${path} must be a list`);
  if (value.length === 0) return [...DEFAULT_COLUMNS];
  return value.map((entry, i) => {
    const at = `${path}[${i}]`;
    const column = field(entry, at, source);
    const jsonPath = text(column.jsonPath, `${at}.jsonPath`, source);
    parseJsonPath(jsonPath, `${source}: ${at}.jsonPath`);
    return {
      name: text(column.name, `${at}.name`, source),
      type: text(column.type, `${at}.type`, source),
      format: typeof column.format === 'string' ? column.format : '',
      // tableconvertor.New: the jsonPath stands in for a missing description.
      description: typeof column.description === 'string' && column.description ? column.description : `Custom resource definition column (in JSONPath format): ${jsonPath}`,
      priority: typeof column.priority === 'number' ? column.priority : 0,
      jsonPath,
    };
  });
}

/** Reads an apiextensions.k8s.io/v1 CRD manifest; `source` names it in errors. */
export function parseCrd(manifest: string, source: string): CustomResourceDefinition {
  let document: unknown;
  try {
    document = parseYaml(manifest);
  } catch (error) {
    throw new CrdError(`${source}: not YAML: ${(error as Error).message.split('\n')[0] ?? ''}`);
  }
  const root = field(document, 'the document', source);
  if (root.apiVersion !== 'apiextensions.k8s.io/v1' || root.kind !== 'CustomResourceDefinition') {
    throw new CrdError(`${source}: not an apiextensions.k8s.io/v1 CustomResourceDefinition`);
  }
  const spec = field(root.spec, 'spec', source);
  if (spec.scope !== 'Namespaced') throw new CrdError(`${source}: spec.scope must be Namespaced (the local API server serves namespaced resources only)`);
  const names = field(spec.names, 'spec.names', source);
  const versions = Array.isArray(spec.versions) ? spec.versions.filter((v) => isJsonObject(v) && v.served === true) : [];
  if (versions.length !== 1) throw new CrdError(`${source}: exactly one served version is supported, found ${versions.length}`);
  const version = versions[0] as JsonObject;
  const kind = text(names.kind, 'spec.names.kind', source);
  const plural = text(names.plural, 'spec.names.plural', source);
  const schema = field(version.schema, 'spec.versions[].schema', source);
  const subresources = isJsonObject(version.subresources) ? version.subresources : {};
  return {
    group: text(spec.group, 'spec.group', source),
    version: text(version.name, 'spec.versions[].name', source),
    kind,
    listKind: typeof names.listKind === 'string' ? names.listKind : `${kind}List`,
    plural,
    singular: typeof names.singular === 'string' ? names.singular : kind.toLowerCase(),
    shortNames: strings(names.shortNames, 'spec.names.shortNames', source),
    categories: strings(names.categories, 'spec.names.categories', source),
    statusSubresource: isJsonObject(subresources.status),
    columns: columnsFrom(version.additionalPrinterColumns, 'spec.versions[].additionalPrinterColumns', source),
    schema: schemaFrom(schema.openAPIV3Schema, 'openAPIV3Schema', source),
  };
}

// ---------------------------------------------------------------------------------------------
// Printer column paths

/** One step of a simple JSONPath: a key, or an index into a list. */
export type PathStep = string | number;

/**
 * The simple JSONPaths printer columns use in practice (`.status.phase`, `.spec.list[0].name`).
 * Filters and wildcards are refused when the CRD is read rather than shown wrong.
 */
export function parseJsonPath(path: string, where: string): PathStep[] {
  const steps: PathStep[] = [];
  const pattern = /\.([A-Za-z0-9_-]+)|\[(\d+)\]/y;
  let end = 0;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(path)) !== null) {
    steps.push(match[1] ?? Number(match[2]));
    end = pattern.lastIndex;
  }
  if (end !== path.length || steps.length === 0) {
    throw new CrdError(`${where}: ${quote(path)} is not a simple JSONPath (.a.b or .a[0].b), the only kind the local API server evaluates`);
  }
  return steps;
}

export function evaluatePath(object: unknown, steps: readonly PathStep[]): JsonValue | undefined {
  let current: unknown = object;
  for (const step of steps) {
    if (typeof step === 'number') current = Array.isArray(current) ? current[step] : undefined;
    else current = isJsonObject(current) ? current[step] : undefined;
    if (current === undefined) return undefined;
  }
  return current as JsonValue;
}

// ---------------------------------------------------------------------------------------------
// Pruning

/** ObjectMeta's JSON fields: anything else under a root `metadata` is dropped (objectmeta.GetObjectMeta). */
const OBJECT_META_FIELDS = new Set([
  'name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation', 'creationTimestamp',
  'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations', 'ownerReferences', 'finalizers', 'managedFields',
]);

const ROOT_META_FIELDS = new Set(['apiVersion', 'kind', 'metadata']);

const child = (path: string, key: string) => (path ? `${path}.${key}` : key);

/**
 * pruning.Prune at the resource root: deletes, in place, every key the schema does not declare
 * (unless x-kubernetes-preserve-unknown-fields), at every level. Returns the dropped paths in the
 * form the server's `unknown field "…"` warnings use.
 */
export function pruneObject(object: JsonObject, schema: StructuralSchema): string[] {
  const dropped: string[] = [];
  const metadata = object.metadata;
  if (isJsonObject(metadata)) {
    for (const key of Object.keys(metadata)) {
      if (!OBJECT_META_FIELDS.has(key)) {
        delete metadata[key];
        dropped.push(`metadata.${key}`);
      }
    }
  }
  for (const [key, value] of Object.entries(object)) {
    if (ROOT_META_FIELDS.has(key)) continue;
    const property = schema.properties?.[key];
    if (property) prune(value, property, key, dropped);
    else if (!schema.preserveUnknownFields) {
      delete object[key];
      dropped.push(key);
    }
  }
  return dropped;
}

function prune(value: JsonValue, schema: StructuralSchema, path: string, dropped: string[]): void {
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => prune(item, schema.items as StructuralSchema, `${path}[${i}]`, dropped));
    return;
  }
  if (!isJsonObject(value)) return;
  for (const [key, item] of Object.entries(value)) {
    const property = schema.properties?.[key] ?? (schema.additionalProperties === true ? undefined : schema.additionalProperties);
    if (property) prune(item, property, child(path, key), dropped);
    else if (!schema.preserveUnknownFields && schema.additionalProperties !== true) {
      delete value[key];
      dropped.push(child(path, key));
    }
  }
}

/**
 * v1 CRDs drop null values of declared, non-nullable fields before validating
 * (PruneNonNullableNullsWithoutDefaults), so `"phase": null` removes phase instead of failing.
 */
export function pruneNulls(value: unknown, schema: StructuralSchema): void {
  if (Array.isArray(value) && schema.items) {
    for (const item of value) pruneNulls(item, schema.items);
    return;
  }
  if (!isJsonObject(value)) return;
  for (const [key, property] of Object.entries(schema.properties ?? {})) {
    if (value[key] === null && !property.nullable) delete value[key];
    else pruneNulls(value[key], property);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation (kube-openapi's validator, as apiextensions turns its findings into field errors)

/** strfmt's date-time, close enough: RFC 3339 with optional fraction. */
const DATE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

function matchesType(value: JsonValue, schema: StructuralSchema): boolean {
  if (value === null) return schema.nullable === true;
  if (schema.intOrString) return typeof value === 'string' || Number.isInteger(value);
  switch (schema.type) {
    case undefined:
      return true;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isJsonObject(value);
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    default:
      return typeof value === schema.type;
  }
}

/** Go's %#v of the list-map key a duplicate entry repeats, as field.Duplicate prints it. */
function goMapLiteral(entry: JsonObject, keys: readonly string[]): string {
  return `map[string]interface {}{${keys.map((k) => `${quote(k)}:${quote(entry[k])}`).join(', ')}}`;
}

/** Every finding of the schema on `value`, whose field path is `path` ('' at the root). */
export function schemaErrors(value: JsonValue, schema: StructuralSchema, path: string): FieldError[] {
  if (!matchesType(value, schema)) return [typeInvalid(path, value, schema.type ?? 'object')];
  if (value === null) return [];
  if (schema.enum && !schema.enum.some((allowed) => JSON.stringify(allowed) === JSON.stringify(value))) {
    return [notSupported(path, value, schema.enum)];
  }
  if (typeof value === 'string') return stringErrors(value, schema, path);
  if (typeof value === 'number') return numberErrors(value, schema, path);
  if (Array.isArray(value)) return arrayErrors(value, schema, path);
  if (isJsonObject(value)) return objectErrors(value, schema, path);
  return [];
}

function stringErrors(value: string, schema: StructuralSchema, path: string): FieldError[] {
  const shown = quote(value);
  if (schema.minLength !== undefined && value.length < schema.minLength) {
    return [invalidValue(path, shown, `${path} in body should be at least ${schema.minLength} chars long`)];
  }
  if (schema.maxLength !== undefined && value.length > schema.maxLength) {
    return [invalidValue(path, shown, `${path} in body should be at most ${schema.maxLength} chars long`)];
  }
  if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
    return [invalidValue(path, shown, `${path} in body should match '${schema.pattern}'`)];
  }
  if (schema.format === 'date-time' && !DATE_TIME.test(value)) {
    return [invalidValue(path, shown, `${path} in body must be of type date-time: ${shown}`)];
  }
  return [];
}

function numberErrors(value: number, schema: StructuralSchema, path: string): FieldError[] {
  if (schema.minimum !== undefined && value < schema.minimum) {
    return [invalidValue(path, String(value), `${path} in body should be greater than or equal to ${schema.minimum}`)];
  }
  if (schema.maximum !== undefined && value > schema.maximum) {
    return [invalidValue(path, String(value), `${path} in body should be less than or equal to ${schema.maximum}`)];
  }
  return [];
}

function arrayErrors(items: readonly JsonValue[], schema: StructuralSchema, path: string): FieldError[] {
  const errors: FieldError[] = [];
  if (schema.minItems !== undefined && items.length < schema.minItems) {
    errors.push(invalidValue(path, String(items.length), `${path} in body should have at least ${schema.minItems} items`));
  }
  if (schema.maxItems !== undefined && items.length > schema.maxItems) {
    errors.push(invalidValue(path, String(items.length), `${path} in body should have at most ${schema.maxItems} items`));
  }
  if (schema.items) errors.push(...items.flatMap((item, i) => schemaErrors(item, schema.items as StructuralSchema, `${path}[${i}]`)));
  const keys = schema.listMapKeys;
  if (keys) {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (!isJsonObject(item)) return;
      const key = JSON.stringify(keys.map((k) => item[k]));
      if (seen.has(key)) errors.push({ type: 'FieldValueDuplicate', field: `${path}[${i}]`, body: `Duplicate value: ${goMapLiteral(item, keys)}` });
      seen.add(key);
    });
  }
  return errors;
}

function objectErrors(object: JsonObject, schema: StructuralSchema, path: string): FieldError[] {
  const errors = (schema.required ?? []).filter((key) => !Object.hasOwn(object, key)).map((key) => required(child(path, key)));
  for (const [key, value] of Object.entries(object)) {
    // The root's metadata is ObjectMeta, checked by the registry, whatever the schema says of it.
    if (!path && key === 'metadata') continue;
    const property = schema.properties?.[key] ?? (schema.additionalProperties === true ? undefined : schema.additionalProperties);
    if (property) errors.push(...schemaErrors(value, property, child(path, key)));
  }
  return errors;
}
