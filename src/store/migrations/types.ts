/** Column types that differ between SQLite and PostgreSQL, for the schema builder. */
import type { ColumnDefinitionBuilder } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

export function columnTypes(dialect: Dialect) {
  return {
    /** Type of an auto-incrementing integer primary key. */
    idType: (dialect === 'postgres' ? 'bigserial' : 'integer') as 'bigserial' | 'integer',
    /** Modifier of that key column. */
    id: (col: ColumnDefinitionBuilder) => (dialect === 'postgres' ? col.primaryKey() : col.primaryKey().autoIncrement()),
    /** 64-bit integers (epoch milliseconds, sizes, foreign ids). */
    big: (dialect === 'postgres' ? 'bigint' : 'integer') as 'bigint' | 'integer',
  };
}
