-- The Online line, in join order.
reap()
return {'ok', online()}
