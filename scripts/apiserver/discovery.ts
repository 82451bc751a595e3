/**
 * API discovery: the documents kubectl reads before anything else (`/version`, `/api`, `/apis`,
 * `/api/v1`, `/apis/GROUP`, `/apis/GROUP/VERSION`) to map `builds`, `build`, `bld` or `events` to a
 * path. Only the legacy (unaggregated) format is served: client-go asks for the aggregated one
 * first (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,…,
 * application/json`) and falls back to the legacy one whenever the answer's Content-Type is plain
 * `application/json` (discovery_client.go downloadAPIs), as against any server before 1.26. No I/O.
 */

/** What discovery tells of one resource. */
export interface DiscoveredResource {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  verbs: readonly string[];
  shortNames: readonly string[];
  categories: readonly string[];
  /** Subresources and their verbs, e.g. `status: ['get', 'patch', 'update']`. */
  subresources: Readonly<Record<string, readonly string[]>>;
}

/** The Kubernetes version this server stands in for (its behaviour follows 1.32's sources). */
export const SERVER_VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-spot-local',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23.4',
  compiler: 'gc',
  platform: 'linux/amd64',
};

const groupVersion = (r: { group: string; version: string }) => (r.group ? `${r.group}/${r.version}` : r.version);

/** metav1.APIResource entries of one group/version, subresources after their resource. */
function apiResources(resources: readonly DiscoveredResource[]): unknown[] {
  return resources.flatMap((r) => {
    const main: Record<string, unknown> = { name: r.plural, singularName: r.singular, namespaced: true, kind: r.kind, verbs: r.verbs };
    if (r.shortNames.length > 0) main.shortNames = r.shortNames;
    if (r.categories.length > 0) main.categories = r.categories;
    const subresources = Object.entries(r.subresources).map(([name, verbs]) => ({
      name: `${r.plural}/${name}`,
      singularName: '',
      namespaced: true,
      kind: r.kind,
      verbs,
    }));
    return [main, ...subresources];
  });
}

function groupDocument(group: string, versions: readonly string[]) {
  const list = versions.map((version) => ({ groupVersion: `${group}/${version}`, version }));
  return { name: group, versions: list, preferredVersion: list[0] };
}

/**
 * The discovery document at `path`, or undefined when the path is not a discovery path.
 * `address` is host:port as the client reached the server (APIVersions.serverAddressByClientCIDRs).
 */
export function discoveryDocument(path: string, resources: readonly DiscoveredResource[], address: string): unknown {
  const trimmed = path.replace(/\/+$/, '') || '/';
  if (trimmed === '/version') return SERVER_VERSION;
  if (trimmed === '/api') {
    return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: address }] };
  }
  const groups = [...new Set(resources.filter((r) => r.group).map((r) => r.group))];
  const versionsOf = (group: string) => [...new Set(resources.filter((r) => r.group === group).map((r) => r.version))];
  if (trimmed === '/apis') {
    return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map((g) => groupDocument(g, versionsOf(g))) };
  }
  const [, prefix, first, second, ...rest] = trimmed.split('/');
  if (rest.length > 0) return undefined;
  if (prefix === 'api' && first === 'v1' && second === undefined) {
    return { kind: 'APIResourceList', groupVersion: 'v1', resources: apiResources(resources.filter((r) => !r.group)) };
  }
  if (prefix !== 'apis' || first === undefined || !groups.includes(first)) return undefined;
  if (second === undefined) return { kind: 'APIGroup', apiVersion: 'v1', ...groupDocument(first, versionsOf(first)) };
  const served = resources.filter((r) => r.group === first && r.version === second);
  if (served.length === 0) return undefined;
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: groupVersion({ group: first, version: second }), resources: apiResources(served) };
}
