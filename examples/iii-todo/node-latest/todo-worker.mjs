// The todo pattern on the current iii-sdk API (>= 0.11), written to the engine's own shapes: handlers read `req.body`
// and answer `{ status_code, body }`, and `stream::send` carries `type`. It needs none of ripple's compat rules, so it
// also runs under `ripple serve --iii --iii-strict`.
//
//   npm install && III_ENGINE_URL=ws://127.0.0.1:49134 node todo-worker.mjs
import { registerWorker, TriggerAction } from 'iii-sdk'

const iii = registerWorker(process.env.III_ENGINE_URL || 'ws://localhost:49134', { workerName: 'todo-worker' })

let created = 0
const newId = () => `todo-${Date.now()}-${++created}`
const call = (function_id, payload) => iii.trigger({ function_id, payload })
const ok = (body, status_code = 200) => ({ status_code, body })

iii.registerFunction('todos::create', async (req) => {
  const id = newId()
  const todo = { _key: id, id, title: req.body?.title, completed: false, created_at: new Date().toISOString() }
  await call('state::set', { scope: 'todos', key: id, value: todo })
  return ok(todo, 201)
})

iii.registerFunction('todos::list', async () => ok(await call('state::list', { scope: 'todos' })))

iii.registerFunction('todos::toggle', async (req) => {
  const id = req.body?.id
  const todo = id ? await call('state::get', { scope: 'todos', key: id }) : null
  if (!todo) return ok({ error: `Todo ${id} not found` }, 404)
  await call('state::update', {
    scope: 'todos',
    key: id,
    ops: [
      { type: 'set', path: 'completed', value: !todo.completed },
      { type: 'set', path: 'updated_at', value: new Date().toISOString() },
    ],
  })
  return ok({ id, completed: !todo.completed })
})

iii.registerFunction('todos::delete', async (req) => {
  await call('state::delete', { scope: 'todos', key: req.body?.id })
  return ok({ deleted: req.body?.id })
})

iii.registerFunction('todos::get-metrics', async () => {
  return ok((await call('state::get', { scope: 'todo-metrics', key: 'global' })) ?? {})
})

for (const [function_id, api_path, http_method] of [
  ['todos::create', '/todos', 'POST'],
  ['todos::list', '/todos', 'GET'],
  ['todos::toggle', '/todos/toggle', 'POST'],
  ['todos::delete', '/todos/delete', 'POST'],
  ['todos::get-metrics', '/todos/metrics', 'GET'],
]) {
  iii.registerTrigger({ type: 'http', function_id, config: { api_path, http_method } })
}

iii.registerFunction('todos::on-change', async (event) => {
  const { new_value, old_value, key } = event
  const action = !old_value ? 'created' : !new_value ? 'deleted' : 'updated'
  iii.trigger({
    function_id: 'stream::send',
    payload: {
      stream_name: 'todos-live',
      group_id: 'all',
      id: `change-${Date.now()}`,
      type: 'todo_changed',
      data: { action, key, todo: new_value },
    },
    action: TriggerAction.Void(),
  })
  return { action, key }
})
iii.registerTrigger({ type: 'state', function_id: 'todos::on-change', config: { scope: 'todos' } })

iii.registerFunction('todos::update-metrics', async (event) => {
  const { new_value, old_value } = event
  const ops = []
  if (new_value && !old_value) ops.push({ type: 'increment', path: 'total', by: 1 })
  if (!new_value && old_value) {
    ops.push({ type: 'increment', path: 'total', by: -1 })
    if (old_value.completed) ops.push({ type: 'increment', path: 'completed', by: -1 })
  }
  if (new_value && old_value && new_value.completed !== old_value.completed) {
    ops.push({ type: 'increment', path: 'completed', by: new_value.completed ? 1 : -1 })
  }
  if (ops.length > 0) await call('state::update', { scope: 'todo-metrics', key: 'global', ops })
})
iii.registerTrigger({ type: 'state', function_id: 'todos::update-metrics', config: { scope: 'todos' } })
