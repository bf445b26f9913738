import { assertFeedbackEvent, decodeFeedbackEvent, encodeFeedbackEvent, type FeedbackEvent } from './feedback-event';

const event = (): FeedbackEvent => ({
  schema: 'thorax.feedback.v1',
  id: '1.2.826.0.1.3680043.8.498.1',
  studyUid: '1.2.826.0.1.3680043.8.498.77',
  model: { name: 'thorax-tiny-cnn', version: '2026.11.30-4', sha256: 'a'.repeat(64) },
  label: 'Cardiomegaly',
  probability: 0.83,
  threshold: 0.51,
  positive: true,
  verdict: 'disagree',
  comment: 'Projection artefact (AP film).',
  reviewer: 'dr-house',
  revision: 2,
  reviewedAt: '2026-11-30T10:00:00.000Z',
});

describe('thorax.feedback.v1', () => {
  it('round-trips a valid event through Kafka bytes', () => {
    expect(decodeFeedbackEvent(encodeFeedbackEvent(event()))).toEqual(event());
    expect(() => assertFeedbackEvent({ ...event(), comment: null, studyUid: null })).not.toThrow();
  });

  it('refuses unknown verdicts, long comments, revision 0, extra fields (no patient data rides along)', () => {
    expect(() => assertFeedbackEvent({ ...event(), verdict: 'maybe' })).toThrow(/verdict/);
    expect(() => assertFeedbackEvent({ ...event(), comment: 'x'.repeat(1001) })).toThrow(/comment/);
    expect(() => assertFeedbackEvent({ ...event(), revision: 0 })).toThrow(/revision/);
    expect(() => assertFeedbackEvent({ ...event(), patientId: 'PAT-1' })).toThrow(/additional properties/);
    expect(() => decodeFeedbackEvent(Buffer.from('{'))).toThrow(/not JSON/);
    expect(() => decodeFeedbackEvent(null)).toThrow(/empty/);
  });
});
