/**
 * metav1.Status bodies (apimachinery pkg/api/errors/errors.go) and field errors
 * (apimachinery pkg/util/validation/field), as kube-apiserver writes them. No I/O.
 */
import type { Status, StatusDetails } from '../../lib/types.js';

/** A refusal on its way to becoming a Status answer (apimachinery's StatusError). */
export class StatusError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
  }
}

/** Key order as kube-apiserver writes it; `reason` and `details` are omitempty in Go. */
export function failure(code: number, reason: string | undefined, message: string, details?: StatusDetails): Status {
  const status: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message };
  if (reason) status.reason = reason;
  if (details) status.details = details;
  status.code = code;
  return status;
}

/** StatusDetails with Go's omitempty applied; callers pass fields in Go's order. */
export function details(fields: StatusDetails): StatusDetails {
  const isEmpty = (v: unknown) => v === undefined || v === '' || v === 0 || (Array.isArray(v) && v.length === 0);
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => !isEmpty(v))) as StatusDetails;
}

export const fail = (status: Status) => new StatusError(status);

export const badRequest = (message: string) => fail(failure(400, 'BadRequest', message));

// ---------------------------------------------------------------------------------------------
// Field errors

export type CauseType =
  | 'FieldValueRequired'
  | 'FieldValueInvalid'
  | 'FieldValueNotSupported'
  | 'FieldValueTypeInvalid'
  | 'FieldValueForbidden'
  | 'FieldValueDuplicate';

export interface FieldError {
  type: CauseType;
  field: string;
  /** field.Error.ErrorBody(): the message without the field path. */
  body: string;
}

/** strconv.Quote for the ASCII values these messages show. */
export const quote = (value: unknown) => JSON.stringify(value);

export const required = (field: string, detail = ''): FieldError => ({
  type: 'FieldValueRequired',
  field,
  body: detail ? `Required value: ${detail}` : 'Required value',
});

/** `shown` is the bad value as Go prints it: quoted for strings, `0x0` for a zero resourceVersion. */
export const invalidValue = (field: string, shown: string, detail: string): FieldError => ({
  type: 'FieldValueInvalid',
  field,
  body: `Invalid value: ${shown}: ${detail}`,
});

export const forbiddenField = (field: string, detail: string): FieldError => ({
  type: 'FieldValueForbidden',
  field,
  body: `Forbidden: ${detail}`,
});

export const notSupported = (field: string, value: unknown, supported: readonly unknown[]): FieldError => ({
  type: 'FieldValueNotSupported',
  field,
  body: `Unsupported value: ${quote(value)}: supported values: ${supported.map(quote).join(', ')}`,
});

/** JSON Schema type names, as the OpenAPI validator reports them. */
function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** How apiextensions reports an OpenAPI type mismatch (InvalidTypeCode → field.TypeInvalid). */
export const typeInvalid = (field: string, value: unknown, expected: string): FieldError => ({
  type: 'FieldValueTypeInvalid',
  field,
  body: `Invalid value: "${jsonType(value)}": ${field} in body must be of type ${expected}: "${jsonType(value)}"`,
});

/** utilerrors aggregate: one message as is, several deduplicated inside brackets. */
function aggregate(errors: readonly FieldError[]): string {
  const messages = [...new Set(errors.map((e) => `${e.field}: ${e.body}`))];
  return messages.length === 1 ? (messages[0] ?? '') : `[${messages.join(', ')}]`;
}

/**
 * NewInvalid. `qualified` is Kind.group for validation errors (details.kind = the Kind) and
 * resource.group for the store's resourceVersion check (details.kind = the plural).
 */
export function invalid(qualified: string, group: string, kind: string, name: string, errors: readonly FieldError[]): StatusError {
  const causes = errors.map((e) => ({ reason: e.type, message: e.body, field: e.field }));
  const message = `${qualified} ${quote(name)} is invalid: ${aggregate(errors)}`;
  return fail(failure(422, 'Invalid', message, details({ name, group, kind, causes })));
}
