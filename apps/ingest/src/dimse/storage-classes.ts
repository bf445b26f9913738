import { TRANSFER_SYNTAXES } from '@thorax/imaging';

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

/** The storage SOP classes Thorax accepts: chest radiographs and their secondary captures. */
export const STORAGE_SOP_CLASSES: Readonly<Record<string, string>> = {
  '1.2.840.10008.5.1.4.1.1.1': 'Computed Radiography Image Storage',
  '1.2.840.10008.5.1.4.1.1.1.1': 'Digital X-Ray Image Storage - For Presentation',
  '1.2.840.10008.5.1.4.1.1.1.1.1': 'Digital X-Ray Image Storage - For Processing',
  '1.2.840.10008.5.1.4.1.1.7': 'Secondary Capture Image Storage',
};

export function isAcceptedStorageClass(uid: string): boolean {
  return Object.prototype.hasOwnProperty.call(STORAGE_SOP_CLASSES, uid);
}

/** Every transfer syntax the decoder reads (libs/imaging), in the decoder's table order. */
export const ACCEPTED_TRANSFER_SYNTAXES: readonly string[] = Object.keys(TRANSFER_SYNTAXES);

/** Verification needs only the two uncompressed little-endian syntaxes. */
export const VERIFICATION_TRANSFER_SYNTAXES: readonly string[] = ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1'];

/**
 * The transfer syntax to accept from an SCU's proposal: the first it proposes (its preference)
 * that is also in `accepted`; undefined when there is none.
 */
export function chooseTransferSyntax(proposed: readonly string[], accepted: readonly string[]): string | undefined {
  return proposed.map((uid) => uid.replace(/\0/g, '').trim()).find((uid) => accepted.includes(uid));
}
