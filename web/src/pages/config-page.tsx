import Form from '@rjsf/core';
import type { ErrorSchema, RJSFSchema } from '@rjsf/utils';
import { customizeValidator } from '@rjsf/validator-ajv8';
import Ajv2020 from 'ajv/dist/2020.js';
import yaml from 'js-yaml';
import { useMemo, useRef, useState } from 'react';
import { BackendError, type FieldError } from '../backend/types.ts';
import { asBackendError, ErrorNote, go, useApp, useLoad } from '../state.tsx';

// Blueprint schemas declare draft 2020-12; rjsf's default Ajv speaks draft-07 only.
const validator = customizeValidator({ AjvClass: Ajv2020 as never, ajvOptionsOverrides: { strict: false } });

/** The server's field errors (JSON pointers) as rjsf's error tree, so they appear next to their fields. */
export function errorSchemaOf(fields: FieldError[]): ErrorSchema {
  const root: Record<string, unknown> = {};
  for (const field of fields) {
    let node = root;
    for (const part of field.path.split('/').filter(Boolean)) {
      node[part] = (node[part] as Record<string, unknown> | undefined) ?? {};
      node = node[part] as Record<string, unknown>;
    }
    node.__errors = [...((node.__errors as string[] | undefined) ?? []), field.message];
  }
  return root as ErrorSchema;
}

function defaultName(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `config-${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}.json`;
}

export default function ConfigPage() {
  const { backend, analysis, session, setPickedConfig } = useApp();
  const [formData, setFormData] = useState<unknown>(undefined);
  const [name, setName] = useState(defaultName);
  const [extraErrors, setExtraErrors] = useState<ErrorSchema>();
  const [failure, setFailure] = useState<ReturnType<typeof asBackendError>>();
  const [saved, setSaved] = useState<string>();
  const [fileNote, setFileNote] = useState<string>();
  const [fileError, setFileError] = useState<ReturnType<typeof asBackendError>>();
  const [formKey, setFormKey] = useState(0);
  const saving = useRef(false);
  const configs = useLoad(() => (analysis ? backend.listObjects(analysis.name, 'configs') : Promise.resolve([])), [analysis?.name, saved]);
  const schema = useMemo(() => {
    if (!analysis) return {} as RJSFSchema;
    // The title is this page's heading and the description its first line already; `$schema` is understood by the Ajv above.
    const { title: _title, description: _description, ...rest } = analysis.configSchema as RJSFSchema;
    return rest as RJSFSchema;
  }, [analysis]);

  if (!analysis) return <h1 tabIndex={-1}>Config</h1>;

  const nameTaken = configs.data?.some((c) => c.name === name) ?? false;

  async function save(config: unknown) {
    if (!analysis || saving.current) return;
    saving.current = true;
    setFailure(undefined);
    setSaved(undefined);
    try {
      const { key } = await backend.saveConfig(analysis.name, name, config);
      setExtraErrors(undefined);
      setSaved(key);
      setPickedConfig(name);
    } catch (error) {
      const e = asBackendError(error);
      setFailure(e);
      if (e.fields.length > 0) setExtraErrors(errorSchemaOf(e.fields));
    } finally {
      saving.current = false;
    }
  }

  async function loadFile(file: File) {
    if (!analysis) return;
    setFileNote(undefined);
    setFileError(undefined);
    setFailure(undefined);
    const format = /\.ya?ml$/i.test(file.name) ? 'yaml' : 'json';
    try {
      const result = await backend.validateConfig(analysis.name, await file.text(), format);
      if (result.ok) {
        setFormData(result.config);
        setExtraErrors(undefined);
        setName(file.name.replace(/\.(ya?ml|json)$/i, '') + '.json');
        setFormKey((k) => k + 1);
        setFileNote(`${file.name} is valid for ${analysis.name}; check the values below and save it.`);
      } else {
        // The file's own values go in the form, so each error sits next to the value it is about.
        const text = await file.text();
        let parsed: unknown;
        try {
          parsed = format === 'yaml' ? yaml.load(text) : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
          setFormData(parsed);
          setFormKey((k) => k + 1);
        }
        setExtraErrors(errorSchemaOf(result.fields ?? []));
        setFileError(new BackendError('ConfigInvalid', `${file.name} does not fit ${analysis.name}'s config schema`, 400, result.fields ?? []));
      }
    } catch (error) {
      setFileError(asBackendError(error));
    }
  }

  return (
    <>
      <h1 tabIndex={-1}>Config for {analysis.name}</h1>
      <p className="hint">
        {String((analysis.configSchema as { description?: string }).description ?? '')} Saved configs go to <code>{session.group}/configs/</code> and are never overwritten.
      </p>
      <div className="split wide-first">
        <section aria-labelledby="form-heading" className="config-form">
          <h2 id="form-heading">Parameters</h2>
          <div className="field">
            <label htmlFor="config-name">Config name</label>
            <input id="config-name" value={name} onChange={(e) => setName(e.target.value)} aria-describedby="config-name-hint" aria-invalid={nameTaken} />
            <span id="config-name-hint" className={nameTaken ? 'field-error' : 'hint'}>
              {nameTaken ? `${name} exists already: choose another name (configs are never overwritten)` : 'A file name under configs/, e.g. run1.json'}
            </span>
          </div>
          <Form
            key={formKey}
            schema={schema}
            validator={validator}
            formData={formData}
            onChange={(e, id) => {
              setFormData(e.formData);
              // The platform's errors were about the values before the researcher's edit (`id`: a field
              // changed by hand; the form's own default filling has none).
              if (id && extraErrors) setExtraErrors(undefined);
            }}
            onSubmit={(e) => void save(e.formData)}
            extraErrors={extraErrors}
            // An optional list (bodyparts) starts empty instead of with one blank, invalid item.
            experimental_defaultFormStateBehavior={{ arrayMinItems: { populate: 'requiredOnly' } }}
            liveValidate="onBlur"
            showErrorList={false}
            noHtml5Validate
            focusOnFirstError
          >
            <div className="actions">
              <button type="submit" disabled={nameTaken}>
                Save config
              </button>
            </div>
          </Form>
          <ErrorNote error={failure} />
          {saved && (
            <p className="ok" role="status">
              Saved as <code>{saved}</code>. <a href="#/submit" onClick={(e) => (e.preventDefault(), go('submit'))}>Submit a job with it</a>
            </p>
          )}
        </section>
        <section aria-labelledby="file-heading" className="existing">
          <h2 id="file-heading">Or use a config file</h2>
          <div className="field">
            <label htmlFor="config-file">YAML or JSON config</label>
            <input id="config-file" type="file" accept=".json,.yaml,.yml,application/json,application/yaml" onChange={(e) => e.target.files?.[0] && void loadFile(e.target.files[0])} />
            <span className="hint">It is checked against the same schema; its values fill the form.</span>
          </div>
          <ErrorNote error={fileError} />
          {fileNote && (
            <p className="ok" role="status">
              {fileNote}
            </p>
          )}
          <h2>Saved configs</h2>
          {configs.data && configs.data.length === 0 && <p className="hint">None yet.</p>}
          <ul className="plain">
            {configs.data?.map((c) => (
              <li key={c.key}>
                <code>{c.name}</code>
              </li>
            ))}
          </ul>
        </section>
      </div>
    </>
  );
}
