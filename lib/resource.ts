/**
 * Which custom resource the Builds are (pure). The Go package takes the group/version when the
 * client is made (`NewClient(ctx, groupVersion)`); here it is a `BuildResource`, default
 * `builds.v1alpha1.spot.release.com`. Every part is checked before it becomes a URL path segment.
 */
import { InvalidNameError } from './errors.js';
import { labelProblem, subdomainProblem } from './names.js';
import { BUILD_GROUP, BUILD_KIND, BUILD_PLURAL, BUILD_VERSION } from './types.js';

export interface BuildResource {
  /** API group, e.g. `spot.release.com`. */
  group: string;
  /** e.g. `v1alpha1`. */
  version: string;
  /** Plural resource name in URL paths, e.g. `builds`. */
  plural: string;
  /** Kind the answers must carry, e.g. `Build`; undefined: whatever kind the server answers with is taken. */
  kind?: string | undefined;
}

export const DEFAULT_RESOURCE: Readonly<BuildResource> = Object.freeze({
  group: BUILD_GROUP,
  version: BUILD_VERSION,
  plural: BUILD_PLURAL,
  kind: BUILD_KIND,
});

const VERSION = /^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$/;
const KIND = /^[A-Za-z][A-Za-z0-9]*$/;

/** Returns `resource` when every part is usable in a path, else throws `InvalidNameError` naming the part. */
export function validateResource(resource: BuildResource): BuildResource {
  const groupProblem = subdomainProblem(resource.group);
  if (groupProblem) throw new InvalidNameError(`invalid resource group ${JSON.stringify(resource.group)}: ${groupProblem}`);
  if (!VERSION.test(resource.version)) {
    throw new InvalidNameError(`invalid resource version ${JSON.stringify(resource.version)}: expected a Kubernetes API version such as v1 or v1alpha1`);
  }
  const pluralProblem = labelProblem(resource.plural);
  if (pluralProblem) throw new InvalidNameError(`invalid resource plural ${JSON.stringify(resource.plural)}: ${pluralProblem}`);
  if (resource.kind !== undefined && !KIND.test(resource.kind)) {
    throw new InvalidNameError(`invalid resource kind ${JSON.stringify(resource.kind)}: expected a CamelCase name such as Build`);
  }
  return resource;
}

/**
 * `PLURAL.VERSION.GROUP` (kubectl's fully qualified form, e.g. `builds.v1alpha1.spot.release.com`)
 * as a resource without a kind: the kind is read from the server's answer.
 */
export function parseResource(text: string): BuildResource {
  const [plural, version, ...group] = text.split('.');
  if (!plural || !version || group.length === 0) {
    throw new InvalidNameError(`invalid resource ${JSON.stringify(text)}: expected PLURAL.VERSION.GROUP, e.g. builds.v1alpha1.spot.release.com`);
  }
  return validateResource({ plural, version, group: group.join('.') });
}

/** `group/version`, the `apiVersion` of the resource's objects. */
export function apiVersionOf(resource: BuildResource): string {
  return `${resource.group}/${resource.version}`;
}

/** `PLURAL.VERSION.GROUP`, the inverse of `parseResource`. */
export function formatResource(resource: BuildResource): string {
  return `${resource.plural}.${resource.version}.${resource.group}`;
}
