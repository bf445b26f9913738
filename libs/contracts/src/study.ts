import type { StudyInfo } from './findings-event';
import type { StudyRef } from './generated/thorax/v1/common';

/** The findings event's study block from the wire StudyRef (empty strings become absent). */
export function studyInfoFromRef(ref: StudyRef | undefined): StudyInfo {
  if (!ref) return {};
  const info: StudyInfo = {};
  if (ref.studyUid) info.studyUid = ref.studyUid;
  if (ref.seriesUid) info.seriesUid = ref.seriesUid;
  if (ref.accession) info.accession = ref.accession;
  if (ref.patientId) info.patientId = ref.patientId;
  if (ref.viewPosition) info.viewPosition = ref.viewPosition;
  return info;
}
