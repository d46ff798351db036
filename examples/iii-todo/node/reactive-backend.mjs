// The iii "reactive backend" todo pattern, written against the iii-sdk 0.9 API exactly as the iii skill teaches it:
// HTTP handlers read `data.title`/`data.id` and return plain values, `stream::send` carries `event_type`, and clients
// listen on ws://HOST:3112/stream/todos-live/all. On the iii engine those habits need ripple's compat rules
// and R-5 (on by default in `ripple serve --iii`); the worker itself is unmodified iii code.
//
//   npm install && III_ENGINE_URL=ws://127.0.0.1:49134 node reactive-backend.mjs
import { registerWorker, Logger, TriggerAction } from 'iii-sdk'

const iii = registerWorker(process.env.III_ENGINE_URL || 'ws://localhost:49134', {
  workerName: 'reactive-backend',
})

// One change from the skill's example: a per-process counter after the timestamp, so two todos created in the same
// millisecond do not share an id (III-PROTOCOL §7.7).
let created = 0
const newId = () => `todo-${Date.now()}-${++created}`

// ---- CRUD over HTTP: state is the database ------------------------------------------------------------------------

iii.registerFunction({ id: 'todos::create' }, async (data) => {
  const id = newId()
  const todo = { _key: id, id, title: data.title, completed: false, created_at: new Date().toISOString() }
  await iii.trigger({ function_id: 'state::set', payload: { scope: 'todos', key: id, value: todo } })
  return todo
})

iii.registerFunction({ id: 'todos::list' }, async () => {
  return await iii.trigger({ function_id: 'state::list', payload: { scope: 'todos' } })
})

iii.registerFunction({ id: 'todos::toggle' }, async (data) => {
  const todo = await iii.trigger({ function_id: 'state::get', payload: { scope: 'todos', key: data.id } })
  if (!todo) throw new Error(`Todo ${data.id} not found`)
  await iii.trigger({
    function_id: 'state::update',
    payload: {
      scope: 'todos',
      key: data.id,
      ops: [
        { type: 'set', path: 'completed', value: !todo.completed },
        { type: 'set', path: 'updated_at', value: new Date().toISOString() },
      ],
    },
  })
  return { id: data.id, completed: !todo.completed }
})

iii.registerFunction({ id: 'todos::delete' }, async (data) => {
  await iii.trigger({ function_id: 'state::delete', payload: { scope: 'todos', key: data.id } })
  return { deleted: data.id }
})

iii.registerFunction({ id: 'todos::get-metrics' }, async () => {
  return await iii.trigger({ function_id: 'state::get', payload: { scope: 'todo-metrics', key: 'global' } })
})

const routes = [
  ['todos::create', '/todos', 'POST'],
  ['todos::list', '/todos', 'GET'],
  ['todos::toggle', '/todos/toggle', 'POST'],
  ['todos::delete', '/todos/delete', 'POST'],
  ['todos::get-metrics', '/todos/metrics', 'GET'],
]
for (const [function_id, api_path, http_method] of routes) {
  iii.registerTrigger({ type: 'http', function_id, config: { api_path, http_method } })
}

// ---- reactive side effects: state triggers on the 'todos' scope ---------------------------------------------------

// Push every change to the clients of stream 'todos-live', group 'all' (fire and forget).
iii.registerFunction({ id: 'todos::on-change' }, async (event) => {
  const { new_value, old_value, key } = event
  const action = !old_value ? 'created' : !new_value ? 'deleted' : 'updated'
  new Logger().info('Todo changed', { key, action })
  iii.trigger({
    function_id: 'stream::send',
    payload: {
      stream_name: 'todos-live',
      group_id: 'all',
      id: `change-${Date.now()}`,
      event_type: 'todo_changed',
      data: { action, key, todo: new_value },
    },
    action: TriggerAction.Void(),
  })
  return { action, key }
})
iii.registerTrigger({ type: 'state', function_id: 'todos::on-change', config: { scope: 'todos' } })

// Keep aggregate counters in 'todo-metrics/global'.
iii.registerFunction({ id: 'todos::update-metrics' }, async (event) => {
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
  if (ops.length > 0) {
    await iii.trigger({ function_id: 'state::update', payload: { scope: 'todo-metrics', key: 'global', ops } })
  }
})
iii.registerTrigger({ type: 'state', function_id: 'todos::update-metrics', config: { scope: 'todos' } })
