// An order event (the payload `hookgate bench` sends) as the summary an app
// wants: used by `hookgate bench --transform` in docs/performance.md.
function transform(request, context) {
  const e = request.body;
  const o = e.data.object;
  request.body = {
    event: e.id,
    order: o.id,
    amount: o.amount / 100,
    currency: o.currency.toUpperCase(),
    customer: o.customer,
    paid: o.status === "paid",
  };
  return request;
}
