/**
 * The topics' contract names (docs/contract.md "Topics"): the one place they are written. The
 * TOPIC_* variables rename them per deployment; `.dlq` topics follow their source topic.
 */
export const TOPIC_NAMES = {
  studies: 'thorax.studies.v1',
  images: 'thorax.images.v1',
  tensors: 'thorax.tensors.v1',
  findings: 'thorax.findings.v1',
  findingsShadow: 'thorax.findings.shadow.v1',
} as const;
