// Slack re-sends an event when it did not get an answer within 3 seconds, with
// X-Slack-Retry-Num set. hookgate answers at once, so a retry is a duplicate:
// drop it, deliver everything else unchanged.
function transform(request, context) {
  if (request.headers["x-slack-retry-num"] !== undefined) {
    return null;
  }
  return request;
}
